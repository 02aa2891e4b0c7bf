"""sp-uhh/sgmse's own code as the reference for our loader of its published checkpoints, shared by
tests/diffusion/test_sgmse_published.py and bench/published_vs_reference.py.

The reference is an export of sp-uhh/sgmse outside the repository, never committed, at $SGMSE_REF (default
/tmp/sgmse_ref):

    git -C <sgmse mirror> archive HEAD | tar -x -C /tmp/sgmse_ref

With it, `write_reference_checkpoint` writes a random-weight checkpoint of each published layout as the
reference's Lightning ScoreModel writes one (the `dnn.` weights: EMA ones in the state dict and the raw ones in
ema.collected_params, its data-module class pickled into the hyper-parameters, which hold the argparse values of
the backbone, SDE, data module and model); `reference_forward` and `reference_sb_enhancement` compute what the
reference computes from it.
"""
from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import torch

REFERENCE = Path(os.environ.get("SGMSE_REF", "/tmp/sgmse_ref"))


def available(path: Path | None = None) -> bool:
    """Whether an export of sp-uhh/sgmse (with its 48 kHz backbone) is at `path` (default REFERENCE)."""
    return (Path(path or REFERENCE) / "sgmse" / "backbones" / "ncsnpp_48k.py").is_file()


def import_reference(path: Path | None = None):
    """sp-uhh/sgmse's `sgmse.backbones` from the export at `path` (default REFERENCE; FileNotFoundError saying
    how to get it)."""
    path = Path(path or REFERENCE)
    if not available(path):
        raise FileNotFoundError(f"the reference sp-uhh/sgmse is not at {path} (export it there, or set SGMSE_REF)")
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
    import sgmse.backbones as backbones
    return backbones


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
    backbones = import_reference()
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
