"""Train a noise-conditioned SGMSE+ model. Configs in conf/; examples:

    python train.py                                   # CPU demo on the synthetic corpus
    python train.py experiment=nc_baseline             # one experiment (scale=poc|paper)
    python train.py -m experiment=cfg_p0.1,cfg_p0.2    # a sweep
"""
import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from sgmse_nc.training import train

    metrics = train(cfg)
    return metrics.get("valid_loss")


if __name__ == "__main__":
    main()
