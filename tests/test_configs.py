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


def test_matrix_settings():
    cfg = lambda n: compose_config([f"experiment={n}", "paths.root_dir=/tmp/x", "paths.output_dir=/tmp/x/r"])
    assert cfg("vbdmd_baseline").encoder.name == "none"
    assert cfg("vbdmd_cnn_cfg_p0.2").model.cond_drop_prob == 0.2
    assert cfg("vbdmd_cnn_cfg_p0.2").encoder.name == "cnn"
    full = cfg("vbdmd_cnn")
    assert (full.backbone.nf, list(full.backbone.ch_mult)) == (128, [1, 1, 2, 2, 2, 2, 2])
    assert full.data.batch_size == 8 and full.model.lr == 1e-4 and full.model.ema_decay == 0.999
    assert (full.sampler.N, full.sampler.snr, full.sampler.corrector_steps) == (30, 0.5, 1)
