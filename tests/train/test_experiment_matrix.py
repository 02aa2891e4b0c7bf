"""The study's experiment matrix: every row composes at both scales and builds on the meta device."""
import pytest
import torch

from sgmse_nc.config import CONFIG_DIR, compose_config
from sgmse_nc.train.run import build_model
from tests.helpers import noise_class_overrides, random_tower_overrides

MATRIX = ["sgmse_baseline", "nc_baseline", "cfg_p0.1", "cfg_p0.2"]
# Every experiment but the CPU demo is a study row and must run at both scales.
SCALED = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml") if p.stem != "demo")


def compose(name, *overrides):
    return compose_config([f"experiment={name}", "paths.root_dir=/tmp/x", "paths.output_dir=/tmp/x/r", *overrides])


def test_matrix_rows_exist_and_default_to_poc():
    assert set(MATRIX) <= set(SCALED)
    assert all(compose(name).trainer.max_steps == 50_000 for name in SCALED)


@pytest.mark.parametrize("scale", ["poc", "paper"])
@pytest.mark.parametrize("name", SCALED)
def test_row_at_scale_builds_on_meta(name, scale):
    cfg = compose(name, f"scale={scale}", *random_tower_overrides(compose(name)), *noise_class_overrides(compose(name)))
    poc = scale == "poc"
    assert cfg.experiment_name == name
    assert (cfg.trainer.devices, cfg.data.batch_size, cfg.trainer.max_steps) == ((1, 4, 50_000) if poc
                                                                                else (4, 8, 200_000))
    assert cfg.trainer.accelerator == "gpu" and (cfg.trainer.get("strategy") is None) == poc
    assert cfg.model.lr == 1e-4 and cfg.model.ema_decay == 0.999
    if not poc:
        return  # the scale changes no model setting: build each row once
    with torch.device("meta"):
        model = build_model(cfg)
    assert next(model.dnn.parameters()).is_meta
    assert model.encoder.embed_dim == cfg.encoder.embed_dim
    assert model.cond_drop_prob == cfg.model.cond_drop_prob


def test_row_settings():
    assert compose("sgmse_baseline").encoder.name == "none"
    nc = compose("nc_baseline")
    assert nc.encoder.name == "cnn" and nc.model.cond_drop_prob == 0.0
    assert {nc.data[s].ref_seconds for s in ("train", "valid", "test")} == {0.25}
    for p in (0.1, 0.2):
        row = compose(f"cfg_p{p}")
        assert row.model.cond_drop_prob == p and row.encoder.name == "cnn"
    assert (nc.backbone.nf, list(nc.backbone.ch_mult)) == (128, [1, 1, 2, 2, 2, 2, 2])
    assert (nc.sampler.N, nc.sampler.snr, nc.sampler.corrector_steps) == (30, 0.5, 1)


def test_48k_rows_are_sgmse_full_band_models():
    for name in ("sgmse_48k", "nc_cfg_48k"):
        cfg = compose(name)
        assert (cfg.spec.sample_rate, cfg.spec.n_fft, cfg.spec.hop_length, cfg.spec.alpha, cfg.spec.beta) == \
            (48000, 1534, 384, 0.667, 0.065)
        assert (cfg.sde.name, cfg.sde.theta, cfg.sde.sigma_min, cfg.sde.sigma_max) == ("ouve", 2.0, 0.1, 1.0)
        backbone = cfg.backbone
        assert (list(backbone.attn_resolutions), backbone.progressive, backbone.progressive_input,
                backbone.sigma_division, backbone.pad_mode) == ([], "none", "none", "after_output", "reflection")
    assert compose("sgmse_48k").encoder.name == "none"
    cfg = compose("nc_cfg_48k")
    assert cfg.encoder.name == "cnn" and cfg.model.cond_drop_prob == 0.1


def test_scale_does_not_touch_the_demo():
    demo, plain = compose("demo"), compose("demo", "scale=none")
    assert demo == plain and demo.trainer.accelerator == "cpu"


def test_optuna_search_composes_with_a_named_metric():
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason='pip install -e ".[sweep]" (in .[dev] too)')
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["hparams_search=optuna", "experiment=cfg_p0.1"], return_hydra_config=True)
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper") and cfg.optimized_metric == "valid_pesq"
    assert "model.lr" in cfg.hydra.sweeper.params
