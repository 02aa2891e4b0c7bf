"""Every published SGMSE+ checkpoint layout loads through our API and computes what sp-uhh/sgmse computes.

The reference code (sp-uhh/sgmse exported outside the repository, never committed; skipped with a message when
absent) writes a random-weight checkpoint of each layout as its ScoreModel does (bench/sgmse_reference.py, which
bench/published_vs_reference.py shares). Our loader reads it with its own backbone, SDE, spectrogram settings,
rate and padding rule; the score / data prediction of the same inputs agrees to 1e-5 relative, and for the
Schrödinger bridge our enhancement equals the reference's SB ODE steps (its sampler, its STFT and spectrogram
transform, its reflection padding) to 1e-3 of the peak.
"""
from __future__ import annotations

import pytest
import soundfile as sf
import torch

from bench.sgmse_reference import PUBLISHED, reference_forward, reference_sb_enhancement, write_reference_checkpoint
from sgmse_nc.diffusion.checkpoints import CheckpointError
from sgmse_nc.diffusion.model import ScoreModel
from tests.helpers import enhance_command, error_line_of, sgmse_reference_backbones, write_noise_wav


@pytest.fixture(autouse=True)
def needs_the_reference():
    """Every test here needs the reference's code: skipped, saying how to get it, when it is absent."""
    sgmse_reference_backbones()


@pytest.mark.parametrize("layout", list(PUBLISHED))
def test_published_layout_loads_and_predicts_as_the_reference(tmp_path, layout):
    path, reference, hparams = write_reference_checkpoint(tmp_path / f"{layout}.ckpt", layout)
    with pytest.raises(Exception):  # what users meet today: torch's safe unpickling refuses the file
        torch.load(path, weights_only=True)
    model = ScoreModel.from_sgmse(path)
    assert model.sample_rate == PUBLISHED[layout][1] and model.conditional is False
    assert (model.spec.n_fft, model.spec.hop_length, model.spec.alpha, model.spec.beta) == (
        hparams["n_fft"], hparams["hop_length"], hparams["spec_abs_exponent"], hparams["spec_factor"])
    assert model.pad_mode == ("zeros" if layout == "ncsnpp" else "reflection")
    assert model.prediction == ("data" if layout == "ncsnpp_v2" else "score")
    assert model.sde.name == ("sb" if layout == "ncsnpp_v2" else "ouve")
    if layout == "ncsnpp_48k":
        assert (model.sde.theta, model.sde.sigma_min, model.sde.sigma_max) == (2.0, 0.1, 1.0)

    g = torch.Generator().manual_seed(3)
    bins = hparams["n_fft"] // 2 + 1
    x_t, y = (0.3 * torch.randn(2, 1, bins, 16, dtype=torch.cfloat, generator=g) for _ in range(2))
    t = torch.tensor([0.2, 0.7])
    with torch.no_grad():
        want, got = reference_forward(reference, layout, x_t, y, t), model(x_t, y, t)
    assert (got - want).abs().max() <= 1e-5 * want.abs().max()


def test_sb_enhancement_equals_the_reference_sb_ode(tmp_path, speech):
    from sgmse_nc.enhance.core import enhance

    path, reference, hparams = write_reference_checkpoint(tmp_path / "sb.ckpt", "ncsnpp_v2")
    model = ScoreModel.from_sgmse(path)
    assert model.sampler_cfg == {"name": "sb_ode", "N": 5}
    noisy = speech(0.5) + 0.02 * torch.randn(8000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = reference_sb_enhancement(path, reference, hparams, noisy)
    (got,) = enhance(model, [noisy], chunk_seconds=0)
    assert got.shape == want.shape == noisy.shape
    assert (got - want).abs().max() <= 1e-3 * want.abs().max()
    (other,) = enhance(model, [noisy], chunk_seconds=0, name="dpm", order=1)  # our DPM-Solver step: another grid
    assert (other - want).abs().max() > 1e-3 * want.abs().max()


def test_enhance_command_takes_a_published_checkpoint(tmp_path):
    path, _, _ = write_reference_checkpoint(tmp_path / "ears_wham.ckpt", "ncsnpp_48k")
    noisy = write_noise_wav(tmp_path / "in" / "a.wav", 0.6, rate=48000)
    enhance_command("--ckpt", path, "--noisy", noisy, "--out", tmp_path / "out", "--N", "2", check=0)
    out = sf.info(tmp_path / "out" / "a.wav")
    assert (out.samplerate, out.frames) == (48000, int(0.6 * 48000))
    wide = write_noise_wav(tmp_path / "in16" / "b.wav", 0.6, rate=16000)
    line = error_line_of(enhance_command("--ckpt", path, "--noisy", wide, "--out", tmp_path / "o16", check=2))
    assert "16000 Hz" in line and "48 kHz" in line and "--resample" in line


def test_settings_we_do_not_reproduce_are_refused(tmp_path):
    path, _, hparams = write_reference_checkpoint(tmp_path / "v2.ckpt", "ncsnpp_v2")
    ckpt = torch.load(path, weights_only=False)
    ckpt["hyper_parameters"]["c_skip"] = "edm"
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="c_skip='edm'"):
        ScoreModel.from_sgmse(path)


def test_init_from_sgmse_warm_starts_a_conditioned_48k_model(tmp_path):
    from sgmse_nc.config import compose_config
    from sgmse_nc.train.run import build_model

    path, reference, hparams = write_reference_checkpoint(tmp_path / "ears.ckpt", "ncsnpp_48k")
    common = [f"paths.root_dir={tmp_path}", f"paths.output_dir={tmp_path}/run", "backbone.nf=8",
              "backbone.ch_mult=[1,2,2]", "backbone.num_res_blocks=1", f"init_from_sgmse={path}"]
    model = build_model(compose_config(["experiment=nc_cfg_48k", *common]))
    assert model.conditional
    g = torch.Generator().manual_seed(1)
    x_t, y = (0.3 * torch.randn(1, 1, 768, 8, dtype=torch.cfloat, generator=g) for _ in range(2))
    t = torch.tensor([0.5])
    with torch.no_grad():
        want = reference_forward(reference, "ncsnpp_48k", x_t, y, t)
        got = model(x_t, y, t, torch.randn(1, model.encoder.embed_dim))  # conditioning starts at zero
    assert (got - want).abs().max() <= 1e-5 * want.abs().max()
    with pytest.raises(CheckpointError, match="backbone=ncsnpp_48k"):  # a 16 kHz layout cannot take it
        build_model(compose_config(["experiment=nc_baseline", *common]))
