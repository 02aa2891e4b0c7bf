"""LAION-CLAP's bundled audio towers (HTSAT, PANN CNN14) without the laion_clap package's side effects.

`import laion_clap` runs its __init__, which builds text tokenizers from a hub at import time, and
`CLAP_Module` fetches roberta-base. Only the audio tower is needed here, so the package's
`clap_module/{htsat,pann_model,utils,feature_fusion}.py` files are loaded as submodules of a private
package namespace: no __init__ of laion_clap runs, nothing touches the network, and the model sizes come
from the package's own `model_configs/*.json`.

Checkpoints: the published LAION-CLAP format (`630k-audioset-best.pt`: `{"state_dict": ...}`, keys
`audio_branch.*` and `audio_projection.{0,2}.*`, optionally prefixed `module.`) and, for PANNs, the original
PANNs release (`Cnn14_mAP=0.431.pth`: `{"model": ...}` with the CNN14 keys at top level).
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import logging
import sys
import types
from pathlib import Path

import torch
from torch import nn

from sgmse_nc.errors import UserError

log = logging.getLogger(__name__)

_PACKAGE = "_sgmse_nc_clap_module"  # private namespace: never shadows a real `laion_clap` import


class WeightsError(UserError, ValueError):
    """A pre-trained encoder's weight file is missing or is not what the config says; the message names the fix."""


def clap_module_dir() -> Path:
    spec = importlib.util.find_spec("laion_clap")  # locates the package without executing it
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the clap/panns encoders need the laion-clap package: pip install 'laion-clap>=1.1.6'")
    return Path(list(spec.submodule_search_locations)[0]) / "clap_module"


def clap_submodule(name: str) -> types.ModuleType:
    """laion_clap.clap_module.<name> (htsat, pann_model), loaded without any of laion_clap's __init__ files."""
    if _PACKAGE not in sys.modules:
        package = types.ModuleType(_PACKAGE)
        package.__path__ = [str(clap_module_dir())]
        sys.modules[_PACKAGE] = package
    return importlib.import_module(f"{_PACKAGE}.{name}")


def audio_config(tower: str, **overrides) -> types.SimpleNamespace:
    """The `audio_cfg` of laion-clap's model_configs/<tower>.json (e.g. HTSAT-tiny, PANN-14), with overrides."""
    path = clap_module_dir() / "model_configs" / f"{tower}.json"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.json") if p.stem.startswith(("HTSAT", "PANN")))
        raise ValueError(f"unknown audio tower {tower!r}; laion-clap ships {known}")
    cfg = json.loads(path.read_text())
    audio = {**cfg["audio_cfg"], **overrides}
    return types.SimpleNamespace(**audio, embed_dim=cfg["embed_dim"])


def build_tower(cfg: types.SimpleNamespace) -> nn.Module:
    """The audio branch (random weights) as laion-clap's CLAP class builds it, without fusion.

    Built on the CPU whatever the default device: torchlibrosa's feature extractors cannot be built on the
    meta device (a model built there for inspection gets a real tower).
    """
    with torch.device("cpu"):
        if cfg.model_type == "HTSAT":
            return clap_submodule("htsat").create_htsat_model(cfg)
        if cfg.model_type == "PANN":
            return clap_submodule("pann_model").create_pann_model(cfg)
    raise ValueError(f"audio tower type {cfg.model_type!r} is not supported (HTSAT or PANN)")


MEL_KEY = "logmel_extractor.melW"  # torchlibrosa's filter bank: librosa's mel filters for the tower's rate


def mel_filters(cfg: types.SimpleNamespace, sample_rate: int | None = None) -> torch.Tensor:
    """The [window_size // 2 + 1, mel_bins] filter bank torchlibrosa builds for cfg (at `sample_rate`)."""
    import warnings

    import librosa

    rate = sample_rate or cfg.sample_rate
    with warnings.catch_warnings():  # "empty filters" at the low rates check_front_end tries
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(librosa.filters.mel(sr=rate, n_fft=cfg.window_size, n_mels=cfg.mel_bins,
                                                    fmin=cfg.fmin, fmax=cfg.fmax).T)


def check_front_end(state: dict[str, torch.Tensor], cfg: types.SimpleNamespace, path) -> None:
    """Refuse a tower file whose mel filters were built for another sample rate than cfg's.

    The filter bank has the same shape at every rate (it depends on the window and the mel bins), so a
    mismatch would load silently: e.g. a LAION-CLAP PANN checkpoint (48 kHz, hop 480) on the PANNs release's
    32 kHz STFT. The file's filters say which rate it was trained at.
    """
    stored = state.get(MEL_KEY)
    if stored is None or torch.allclose(stored.float(), mel_filters(cfg).float(), atol=1e-6):
        return
    rates = [r for r in (16000, 22050, 24000, 32000, 44100, 48000)
             if torch.allclose(stored.float(), mel_filters(cfg, r).float(), atol=1e-6)]
    found = (f"its mel filters are those of a {rates[0]} Hz front end" if rates
             else "its mel filters match no sample rate with the configured window / mel bins / fmin / fmax")
    hint = (f"set encoder.audio_cfg.sample_rate={rates[0]} encoder.audio_cfg.hop_size={rates[0] // 100}"
            + (" encoder.min_seconds=10 (a LAION-CLAP checkpoint's fill)" if rates[0] == 48000 else "")
            if rates else "check encoder.tower and encoder.audio_cfg against the checkpoint")
    raise WeightsError(f"{path}: {found}, but the encoder is configured for {cfg.sample_rate} Hz "
                       f"(hop {cfg.hop_size}): its filters would be applied to the wrong frequencies. {hint}.")


def clap_projection(tower_dim: int, joint_dim: int = 512) -> nn.Sequential:
    """CLAP's `audio_projection` (Linear, ReLU, Linear): tower features -> the 512-d joint space."""
    return nn.Sequential(nn.Linear(tower_dim, joint_dim), nn.ReLU(), nn.Linear(joint_dim, joint_dim))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def read_weights(path, what: str = "LAION-CLAP") -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, `module.` prefixes removed, with clear messages for a bad path."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: {what} weights not found. Download the checkpoint once (no run downloads "
                           f"anything) and set encoder.weights=/path/to/the/file (see conf/encoder/ and the README).")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # not a torch file, truncated, or pickled objects beyond plain tensors
        raise WeightsError(f"{path}: cannot be read as a {what} checkpoint ({type(err).__name__}: {err}).") from err
    if isinstance(ckpt, dict):
        for key in ("state_dict", "model"):
            if isinstance(ckpt.get(key), dict):
                ckpt = ckpt[key]
                break
    if not isinstance(ckpt, dict) or not all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise WeightsError(f"{path}: not a {what} checkpoint (expected a state dict of tensors).")
    return {k.removeprefix("module."): v for k, v in ckpt.items()}


def split_clap_state(state: dict[str, torch.Tensor], path, allow_bare: bool = False):
    """(tower state, projection state or None) from CLAP keys `audio_branch.*` / `audio_projection.*`.

    allow_bare: a file without `audio_branch.` keys is a bare tower (the original PANNs release).
    """
    tower = {k.removeprefix("audio_branch."): v for k, v in state.items() if k.startswith("audio_branch.")}
    projection = {k.removeprefix("audio_projection."): v for k, v in state.items()
                  if k.startswith("audio_projection.")}
    if tower:
        return tower, projection or None
    if allow_bare:
        return state, None
    sample = ", ".join(list(state)[:4])
    raise WeightsError(f"{path}: not a LAION-CLAP checkpoint: no `audio_branch.*` keys (found e.g. {sample}). "
                       f"Use a LAION-CLAP audio checkpoint such as 630k-audioset-best.pt.")


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], path, part: str) -> None:
    """Load and report: missing or mis-shaped weights are an error (wrong tower size?), unexpected ones a
    warning."""
    own = module.state_dict()
    mis_shaped = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
                  if k in own and v.shape != own[k].shape]
    if mis_shaped:
        raise WeightsError(f"{path}: {len(mis_shaped)} {part} weights have other shapes than encoder.tower builds "
                           f"(e.g. {', '.join(mis_shaped[:3])}); does encoder.tower match the checkpoint?")
    result = module.load_state_dict(state, strict=False)
    if result.missing_keys:
        raise WeightsError(f"{path}: {len(result.missing_keys)} {part} weights missing (e.g. "
                           f"{', '.join(result.missing_keys[:4])}); does encoder.tower match the checkpoint?")
    if result.unexpected_keys:
        log.warning("%s: %d unexpected %s weights ignored (e.g. %s)", path, len(result.unexpected_keys), part,
                    ", ".join(result.unexpected_keys[:4]))
