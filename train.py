"""Train a noise-conditioned SGMSE+ model. Configs in conf/; examples:

    python train.py                                   # CPU demo on the synthetic corpus
    python train.py experiment=nc_baseline             # one experiment (scale=poc|paper)
    python train.py -m experiment=cfg_p0.1,cfg_p0.2    # a sweep
"""
import sys

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from sgmse_nc.training import train

    from sgmse_nc.cli import report

    try:
        metrics = train(cfg)
    except Exception as err:  # a problem the user can fix (bad data, config): one `error:` line, status 2
        status = report(err)
        if status is None:
            raise
        sys.exit(status)
    return metrics.get("valid_loss")


if __name__ == "__main__":
    main()
