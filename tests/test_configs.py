"""Every experiment file composes and resolves; the model node builds for the CPU-sized ones."""
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from sgmse_nc.config import CONFIG_DIR, compose_config

EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes(name):
    cfg = compose_config([f"experiment={name}", "paths.root_dir=/tmp/x", "paths.output_dir=/tmp/x/run"])
    assert cfg.experiment_name == name
    OmegaConf.to_container(cfg.model, resolve=True)
    OmegaConf.to_container(cfg.data, resolve=True)
    assert cfg.model.backbone._target_.endswith("NCSNpp")
    assert cfg.backbone.cond_dim == cfg.encoder.embed_dim

