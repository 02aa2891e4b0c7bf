"""The train command (sgmse-train, train.py): Hydra composes conf/train.yaml with the command line's overrides.

    sgmse-train                                   # CPU demo on the synthetic corpus
    sgmse-train experiment=nc_baseline            # one experiment (scale=poc|paper)
    sgmse-train -m experiment=cfg_p0.1,cfg_p0.2   # a sweep

A problem the user can fix (bad data, config) is one `error: ...` line and exit status 2 (sgmse_nc.cli).
"""
import sys

import hydra
from omegaconf import DictConfig

from sgmse_nc.config import CONFIG_DIR  # also registers the run_key resolver that names run folders


def main() -> float | None:
    """Check the command line's config choices (one `error:` line, status 2), then run Hydra."""
    import os

    from sgmse_nc.cli import run_main
    from sgmse_nc.config import check_overrides

    if os.environ.get("LOCAL_RANK", "0") == "0":  # DDP ranks > 0 re-run a command line rank 0 has checked
        status = run_main(check_overrides, sys.argv[1:])
        if status:
            sys.exit(status)
    return hydra_main()


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def hydra_main(cfg: DictConfig) -> float | None:
    from sgmse_nc.cli import report_error
    from sgmse_nc.train.run import optimized_value, train

    try:
        return optimized_value(cfg, train(cfg))
    except Exception as err:
        status = report_error(err)
        if status is None:
            raise
        sys.exit(status)


if __name__ == "__main__":
    main()
