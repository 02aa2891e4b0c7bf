"""Every published SGMSE+ checkpoint layout loads through our API and computes what sp-uhh/sgmse computes.

The reference code (sp-uhh/sgmse exported outside the repository, never committed; skipped with a message when
absent, see tests/nets/test_sgmse_layouts.py) builds each layout's network with random weights; the checkpoint
is written as its Lightning ScoreModel writes one (the `dnn.` weights: EMA ones in the state dict and the raw
ones in ema.collected_params, its data-module class pickled into the hyper-parameters, which holds the argparse
values of the backbone, SDE, data module and model). Our loader reads it with its own backbone, SDE,
spectrogram settings, rate and padding rule; the score / data prediction of the same inputs agrees to 1e-5
relative, and for the Schrödinger bridge our enhancement equals the reference's SB ODE steps (its sampler, its
STFT and spectrogram transform, its reflection padding) to 1e-3 of the peak.
"""
from __future__ import annotations

import sys
import types

import pytest
import soundfile as sf
import torch

from sgmse_nc.diffusion.checkpoints import CheckpointError
from sgmse_nc.diffusion.model import ScoreModel
from tests.helpers import enhance_command, error_line_of, sgmse_reference_backbones as reference_backbones, \
    write_noise_wav

FAKE_MODULE = "sgmse.data_module"
TINY = {"nf": 8, "ch_mult": [1, 2, 2], "num_res_blocks": 1}
# layout -> (the reference's hyper-parameters beyond its argparse defaults, rate)
PUBLISHED = {
    "ncsnpp": ({"backbone": "ncsnpp", "sde": "ouve", "attn_resolutions": [64]}, 16000),
    "ncsnpp_v2": ({"backbone": "ncsnpp_v2", "sde": "sbve", "loss_type": "data_prediction", "N": 5,
                   "attn_resolutions": [64]}, 16000),
    "ncsnpp_48k": ({"backbone": "ncsnpp_48k", "sde": "ouve", "n_fft": 1534, "hop_length": 384, "spec_factor": 0.065,
                    "spec_abs_exponent": 0.667, "theta": 2.0, "sigma_min": 0.1, "sigma_max": 1.0,
                    "attn_resolutions": []}, 48000),
}
CLASSES = {"ncsnpp": "NCSNpp", "ncsnpp_v2": "NCSNpp_v2", "ncsnpp_48k": "NCSNpp_48k"}


def argparse_defaults() -> dict:
    """The hyper-parameters an SGMSE+ training saves with no options given: the argparse defaults of its data
    module, the OUVE and SB SDEs and the ScoreModel (sgmse.model imports packages we do not install, so its
    defaults are written out here from its add_argparse_args)."""
    from argparse import ArgumentParser

    from sgmse.data_module import SpecsDataModule
    from sgmse.sdes import OUVESDE, SBVESDE

    values = {}
    for cls in (SpecsDataModule, OUVESDE, SBVESDE):
        parser = ArgumentParser(conflict_handler="resolve")
        parser.add_argument("--base_dir")  # SpecsDataModule requires it
        cls.add_argparse_args(parser)
        values.update({k: v for k, v in vars(parser.parse_args(["--base_dir", "/data"])).items()})
    values.update(lr=1e-4, ema_decay=0.999, t_eps=0.03, num_eval_files=20, loss_type="score_matching",
                  loss_weighting="sigma^2", network_scaling=None, c_in="1", c_out="1", c_skip="0", sigma_data=0.1,
                  l1_weight=0.001, pesq_weight=0.0, sr=16000)
    return values


def write_reference_checkpoint(path, layout: str, seed: int = 0):
    """A random-weight checkpoint of `layout` as sp-uhh/sgmse writes it; returns (path, EMA net, hparams)."""
    backbones = reference_backbones()
    hparams = {**argparse_defaults(), **TINY, **PUBLISHED[layout][0]}
    n_bins = hparams["n_fft"] // 2 + 1
    kwargs = {k: v for k, v in hparams.items() if k not in ("backbone", "sde")}
    torch.manual_seed(seed)
    nets = [getattr(backbones, CLASSES[layout])(**kwargs, image_size=n_bins).eval() for _ in range(2)]
    with torch.no_grad():  # wake the near-zero residual branches; EMA and raw weights differ
        for net in nets:
            for p in net.parameters():
                p.add_(0.05 * torch.randn_like(p))
    ema, raw = nets
    module = sys.modules.get(FAKE_MODULE)
    data_module_cls = module.SpecsDataModule if module else types.new_class("SpecsDataModule")
    ckpt = {"epoch": 1, "global_step": 100, "pytorch-lightning_version": "2.1.0",
            "hyper_parameters": {**hparams, "data_module_cls": data_module_cls},
            "state_dict": {f"dnn.{k}": v for k, v in ema.state_dict().items()},  # saved after validation: EMA
            "ema": {"decay": 0.999, "num_updates": 100, "shadow_params": [p.detach().clone() for p in ema.parameters()],
                    "collected_params": [p.detach().clone() for p in raw.parameters()]}}
    torch.save(ckpt, path)
    return path, ema, hparams


def reference_forward(net, layout, x_t, y, t):
    """sgmse.model.ScoreModel.forward with its defaults (c_in 1, c_out 1, c_skip 0, no network scaling)."""
    return net(x_t, y, t) if layout == "ncsnpp_v2" else -net(torch.cat([x_t, y], dim=1), t)


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


def reference_sb_enhancement(path, reference, hparams, noisy: torch.Tensor) -> torch.Tensor:
    """sp-uhh/sgmse's enhancement.py for an `sbve` model, step by step with its own classes: peak normalisation,
    its data module's STFT and spectrogram transform, its reflection padding, its SB ODE sampler, back to audio."""
    from sgmse.data_module import SpecsDataModule
    from sgmse.sampling import get_sb_sampler
    from sgmse.sdes import SBVESDE
    from sgmse.util.other import pad_spec

    data = SpecsDataModule(base_dir="/data", n_fft=hparams["n_fft"], hop_length=hparams["hop_length"],
                           spec_factor=hparams["spec_factor"], spec_abs_exponent=hparams["spec_abs_exponent"],
                           gpu=False)
    sde = SBVESDE(k=hparams["k"], c=hparams["c"], N=hparams["N"], eps=hparams["eps"])
    y = noisy[None]
    T_orig, norm = y.size(1), y.abs().max()
    Y = torch.unsqueeze(data.spec_fwd(data.stft(y / norm)), 0)
    Y = pad_spec(Y, mode="reflection")
    score_fn = lambda x, y_, t: reference_forward(reference, "ncsnpp_v2", x, y_, t)  # noqa: E731
    sample, _ = get_sb_sampler(sde, score_fn, y=Y, sampler_type="ode")()
    return data.istft(data.spec_back(sample.squeeze()), T_orig) * norm


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
