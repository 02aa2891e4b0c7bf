"""Train a noise-conditioned SGMSE+ model. Configs in conf/; examples:

    python train.py                                   # CPU demo on the synthetic corpus
    python train.py experiment=nc_baseline             # one experiment (scale=poc|paper)
    python train.py -m experiment=cfg_p0.1,cfg_p0.2    # a sweep
"""
import sys

import hydra
from omegaconf import DictConfig

import sgmse_nc.config  # noqa: F401  (registers the run_key resolver that names run folders)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from sgmse_nc.cli import report
    from sgmse_nc.training import optimized_value, train

    try:
        return optimized_value(cfg, train(cfg))
    except Exception as err:  # a problem the user can fix (bad data, config): one `error:` line, status 2
        status = report(err)
        if status is None:
            raise
        sys.exit(status)


if __name__ == "__main__":
    main()
