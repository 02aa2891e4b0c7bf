"""Compose the project's Hydra configs outside train.py (tests, benches, notebooks), with the same
defaults lists and overrides as the command line."""
from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

CONFIG_DIR = Path(__file__).resolve().parents[1] / "conf"


def compose_config(overrides: list[str] | tuple[str, ...] = (), config_name: str = "train") -> DictConfig:
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name, overrides=list(overrides))


def build_model_from_config(overrides: list[str] | tuple[str, ...] = (), **model_kwargs):
    """A ScoreModel from the composed `model` node (e.g. overrides=["backbone=ncsnpp_tiny"])."""
    from hydra.utils import instantiate

    cfg = compose_config(overrides)
    node = {k: OmegaConf.to_container(cfg.model[k], resolve=True) if OmegaConf.is_config(cfg.model[k])
            else cfg.model[k] for k in cfg.model}
    return instantiate({**node, **model_kwargs}, _recursive_=False)
