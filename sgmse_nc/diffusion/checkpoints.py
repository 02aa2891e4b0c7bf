"""Read SGMSE+ (sp-uhh/sgmse) Lightning checkpoints without the sgmse package.

An SGMSE+ checkpoint pickles sgmse's own classes (e.g. its data-module class in the
hyper-parameters), so `torch.load` fails on torch >= 2.6 (weights-only unpickling) and also with
`weights_only=False` when sgmse is not installed. We only need tensors and plain values, so the file
is read with a restricted unpickler: tensors, storages and builtin containers are rebuilt, every
other class becomes an inert placeholder and no foreign code is imported or run.

EMA: the ScoreModel keeps a torch_ema state under `checkpoint["ema"]`: `shadow_params` (the EMA
weights) and, once validation has run, `collected_params` (the raw weights stored while the EMA copy
sat in the network). Checkpoints are written after validation, so their `state_dict` usually holds
the EMA weights; both lists are in `dnn.parameters()` order, which is the order of the `dnn.` keys.
"""
from __future__ import annotations

import inspect
import pickle
from pathlib import Path

import torch

from sgmse_nc.errors import UserError, short_list
from sgmse_nc.nets.ncsnpp import NCSNpp

DNN_PREFIX = "dnn."


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be used; the message names the file and the fix."""


class MissingCheckpoint(CheckpointError, FileNotFoundError):
    """No checkpoint at the path given (also a FileNotFoundError, for callers that look for that)."""


# ---------------------------------------------------------------- restricted unpickling

class UnknownObject(dict):
    """Stands in for any class the checkpoint names that we do not allow to be imported.

    A dict subclass so that pickled dict subclasses (e.g. Lightning's AttributeDict holding the
    hyper-parameters) keep their items; arguments and state are kept for inspection, never executed.
    """

    pickled_name = "?"

    def __init__(self, *args, **kwargs):
        super().__init__()
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state):
        self.state = state

    def append(self, item):  # pickled list subclasses
        self.setdefault("_items", []).append(item)

    def extend(self, items):
        self.setdefault("_items", []).extend(items)


_SAFE_BUILTINS = {"set", "frozenset", "slice", "complex", "range", "bytearray", "list", "dict", "tuple",
                  "int", "float", "str", "bool", "bytes"}
_SAFE_GLOBALS = {("collections", "OrderedDict"), ("_codecs", "encode"), ("torch", "Size"), ("torch", "device"),
                 ("numpy", "dtype"), ("numpy", "ndarray"), ("numpy.core.multiarray", "scalar"),
                 ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
                 ("numpy._core.multiarray", "_reconstruct")}
_placeholders: dict[tuple[str, str], type] = {}


def _placeholder(module: str, name: str) -> type:
    key = (module, name)
    if key not in _placeholders:
        _placeholders[key] = type(name, (UnknownObject,), {"__module__": "sgmse_nc.diffusion.checkpoints._unknown",
                                                           "pickled_name": f"{module}.{name}"})
    return _placeholders[key]


def _allowed(module: str, name: str) -> bool:
    if (module, name) in _SAFE_GLOBALS or (module == "builtins" and name in _SAFE_BUILTINS):
        return True
    if module in ("torch._utils", "torch._tensor") and name.startswith("_rebuild_"):
        return True  # torch's own tensor/parameter reconstruction helpers
    # dtypes (torch.float32, ...); storage classes are resolved by torch.load before we are asked
    return module == "torch" and isinstance(getattr(torch, name, None), torch.dtype)


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if _allowed(module, name):
            return super().find_class(module, name)
        return _placeholder(module, name)


class _RestrictedPickleModule:
    """What torch.load expects of `pickle_module`."""
    __name__ = "sgmse_nc_restricted_pickle"
    Unpickler = _RestrictedUnpickler

    @staticmethod
    def load(file, **kwargs):
        return _RestrictedUnpickler(file, **kwargs).load()


def read_checkpoint_file(path) -> dict:
    """torch.load a Lightning checkpoint with the restricted unpickler (CPU tensors)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found. Check the path (e.g. init_from_sgmse=...).")
    try:
        ckpt = torch.load(path, map_location="cpu", pickle_module=_RestrictedPickleModule, weights_only=False)
    except Exception as err:  # zipfile, pickle and EOF errors all mean "not a torch checkpoint"
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({type(err).__name__}: {err}). "
                              f"Pass an SGMSE+ .ckpt file.") from err
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: holds a {type(ckpt).__name__}, not a Lightning checkpoint dict.")
    return ckpt


def read_our_checkpoint(path) -> dict:
    """A checkpoint train.py wrote, read without building the model (weights only, memory-mapped).

    MissingCheckpoint (a FileNotFoundError) for a missing file, CheckpointError naming the file for anything that is not ours
    (random bytes, a truncated copy, another framework's file); callers add how to fix it."""
    path = Path(path)
    if not path.is_file():
        raise MissingCheckpoint(f"{path}: file not found")
    try:  # ours hold only tensors and plain containers; mmap: nothing is read into memory twice
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # zipfile, unpickling and EOF errors all mean "not a file of ours"
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: not a readable sgmse_nc checkpoint ({reason})") from None
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(hparams, dict) or "backbone" not in hparams or "state_dict" not in ckpt:
        raise CheckpointError(f"{path}: not a sgmse_nc checkpoint (a PyTorch file without model hyper-parameters "
                              f"or weights)")
    return ckpt


# ---------------------------------------------------------------- SGMSE+ checkpoints

def _plain(value):
    """Hyper-parameter value as plain Python (None when unreadable); classes we did not import become
    their dotted name, placeholder objects their readable items."""
    if isinstance(value, type):
        return value.pickled_name if issubclass(value, UnknownObject) else None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        items = [_plain(v) for v in value]
        return items if all(v is not None for v in items) else None
    if isinstance(value, dict):
        items = {str(k): _plain(v) for k, v in value.items()}
        items = {k: v for k, v in items.items() if v is not None}
        return items or (None if isinstance(value, UnknownObject) else items)
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy / torch scalars
        return value.item()
    return None


def _hparams(ckpt: dict) -> dict:
    hparams = _plain(ckpt.get("hyper_parameters"))
    return hparams if isinstance(hparams, dict) else {}


def _from_list(names: list[str], tensors, path: Path, what: str) -> dict[str, torch.Tensor]:
    """Name a parameter list (EMA state, dnn.parameters() order) with the state dict's dnn keys."""
    tensors = list(tensors)
    if len(tensors) != len(names):
        raise CheckpointError(f"{path}: ema.{what} holds {len(tensors)} tensors but the state dict has "
                              f"{len(names)} dnn parameters; load with the other use_ema setting.")
    return {name: tensor for name, tensor in zip(names, tensors)}


def load_sgmse_checkpoint(path, use_ema: bool = True) -> dict:
    """Backbone weights and hyper-parameters of an SGMSE+ checkpoint.

    Returns {"backbone_state": NCSN++ state dict (prefix `dnn.` removed), "hparams": plain dict of the
    readable hyper-parameters, "ema_used": whether the weights are the EMA ones}.
    use_ema=True gives the EMA weights when the file has them; use_ema=False the raw training weights.
    """
    path = Path(path)
    ckpt = read_checkpoint_file(path)
    state = ckpt.get("state_dict")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: no `state_dict`; not an SGMSE+ (Lightning) checkpoint.")
    dnn = {k[len(DNN_PREFIX):]: v for k, v in state.items() if k.startswith(DNN_PREFIX)}
    if not dnn:
        raise CheckpointError(f"{path}: no `dnn.` weights in its state_dict; not an SGMSE+ checkpoint.")
    hparams = _hparams(ckpt)
    backbone = hparams.get("backbone", "ncsnpp")
    if backbone not in SGMSE_LAYOUTS or "all_modules.0.W" not in dnn:
        raise CheckpointError(f"{path}: backbone {backbone!r} is not one of SGMSE+'s NCSN++ layouts "
                              f"({', '.join(SGMSE_LAYOUTS)}); it cannot be loaded.")

    names = list(dnn)
    ema = ckpt.get("ema") if isinstance(ckpt.get("ema"), dict) else {}
    shadow, collected = ema.get("shadow_params"), ema.get("collected_params")
    # The state dict is the EMA copy when it was saved during validation (then it equals the shadow).
    state_is_ema = collected is not None and (
        shadow is None or all(torch.equal(a, b) for a, b in zip(dnn.values(), shadow)))
    if use_ema:
        if state_is_ema:
            weights, ema_used = dnn, True
        elif shadow is not None:
            weights, ema_used = _from_list(names, shadow, path, "shadow_params"), True
        else:
            weights, ema_used = dnn, False
    else:
        weights = _from_list(names, collected, path, "collected_params") if state_is_ema else dnn
        ema_used = False
    return {"backbone_state": dict(weights), "hparams": hparams, "ema_used": ema_used,
            "global_step": ckpt.get("global_step")}


def load_backbone_weights(backbone: torch.nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Load SGMSE+ weights strictly into the NCSN++ part of `backbone`.

    Conditioning modules (backbone.CONDITIONING_MODULES) are not in SGMSE+ checkpoints and keep their
    current (zero-initialised) values. Returns the names of those untouched parameters.
    Raises CheckpointError listing missing, unexpected and mis-shaped tensors.
    """
    cond_prefixes = tuple(f"{name}." for name in getattr(backbone, "CONDITIONING_MODULES", ()))
    own = {k: v for k, v in backbone.state_dict().items() if not k.startswith(cond_prefixes)}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mis_shaped = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
                  for k, v in own.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or mis_shaped:
        def listing(title, items):
            return f"\n  {title} ({len(items)}): " + short_list(items, 8)
        raise CheckpointError(
            "SGMSE+ weights do not fit this backbone; build it with the checkpoint's settings (SGMSE+'s "
            "default is conf/backbone/ncsnpp.yaml)."
            + (listing("missing in checkpoint", missing) if missing else "")
            + (listing("unexpected in checkpoint", unexpected) if unexpected else "")
            + (listing("shape mismatch", mis_shaped) if mis_shaped else ""))
    result = backbone.load_state_dict(state, strict=False)
    assert not result.unexpected_keys
    return list(result.missing_keys)


# ---------------------------------------------------------------- SGMSE+ settings -> ours

# SGMSE+'s backbone name -> the options of our NCSN++ that make it that network (conf/backbone/<name>.yaml)
SGMSE_LAYOUTS = {
    "ncsnpp": {},
    "ncsnpp_v2": {"scale_by_sigma": False, "negate_output": False, "pad_mode": "reflection"},
    "ncsnpp_48k": {"attn_resolutions": [], "progressive": "none", "progressive_input": "none",
                   "sigma_division": "after_output", "pad_mode": "reflection"},
}
_SIZE_KEYS = ("nf", "ch_mult", "num_res_blocks", "attn_resolutions", "centered")  # read from the hparams when set
_SUPPORTED = {  # hyper-parameter -> the values our model reproduces (a missing one has SGMSE+'s default)
    "transform_type": ("exponent",), "window": ("hann",), "normalize": ("noisy",), "c_in": ("1",),
    "c_out": ("1",), "c_skip": ("0",), "loss_type": ("score_matching", "data_prediction"),
    "network_scaling": (None, "1/t"), "sde": ("ouve", "sbve"), "embedding_type": ("fourier",),
    "resblock_type": ("biggan",), "progressive_combine": ("sum",), "fir": (True,)}


def sgmse_model_config(hparams: dict, path) -> dict:
    """Our ScoreModel's arguments for an SGMSE+ checkpoint's hyper-parameters: its backbone layout and sizes, SDE,
    spectrogram settings and rate, loss type and the sampler its enhancement.py runs. Settings our model does not
    reproduce are refused with a CheckpointError naming them (never silently run differently)."""
    layout = hparams.get("backbone", "ncsnpp")
    if layout not in SGMSE_LAYOUTS:
        raise CheckpointError(f"{path}: backbone {layout!r} is not one of SGMSE+'s NCSN++ layouts "
                              f"({', '.join(SGMSE_LAYOUTS)}); it cannot be read.")
    odd = {k: hparams[k] for k, ok in _SUPPORTED.items() if k in hparams and hparams[k] not in ok}
    if odd:
        raise CheckpointError(f"{path}: SGMSE+ settings this model does not reproduce: "
                              + ", ".join(f"{k}={v!r} (ours: {' / '.join(map(repr, _SUPPORTED[k]))})"
                                          for k, v in odd.items()) + ". It cannot be used here.")
    backbone = {"_target_": "sgmse_nc.nets.ncsnpp.NCSNpp", **SGMSE_LAYOUTS[layout],
                **{k: hparams[k] for k in _SIZE_KEYS if k in hparams}}
    if layout == "ncsnpp_v2" and hparams.get("network_scaling") == "1/t":  # F / t after the output layer
        backbone.update(scale_by_sigma=True, sigma_division="after_output")
    rate = 48000 if layout == "ncsnpp_48k" else 16000  # as sp-uhh/sgmse's enhancement.py decides it
    spec = {"n_fft": hparams.get("n_fft", 510), "hop_length": hparams.get("hop_length", 128),
            "alpha": hparams.get("spec_abs_exponent", 0.5), "beta": hparams.get("spec_factor", 0.15),
            "sample_rate": rate}
    t_eps = hparams.get("t_eps", 0.03)
    if hparams.get("sde", "ouve") == "sbve":
        sde = {"name": "sb", "k": hparams.get("k", 2.6), "c": hparams.get("c", 0.4), "eps": hparams.get("eps", 1e-8),
               "t_eps": t_eps}
        sampler = {"name": "sb_ode", "N": hparams.get("N", 50)}
        if hparams.get("sampler_type", "ode") != "ode":
            sampler = {"name": "sb_sde", "N": hparams.get("N", 50)}
    else:
        sde = {"name": "ouve", "theta": hparams.get("theta", 1.5), "sigma_min": hparams.get("sigma_min", 0.05),
               "sigma_max": hparams.get("sigma_max", 0.5), "t_eps": t_eps}
        sampler = {"name": "pc", "N": 30, "snr": 0.5, "corrector_steps": 1}  # enhancement.py's defaults
    return {"backbone": backbone, "encoder": {"name": "none"}, "sde": sde, "spec": spec, "sampler": sampler,
            "loss_type": hparams.get("loss_type", "score_matching")}


def sgmse_layout_differences(ours: dict, theirs: dict) -> list[str]:
    """Settings of an SGMSE+ checkpoint's network (sgmse_model_config) that a backbone config of ours lacks and
    its weights cannot reveal (sizes and structure are checked on the weights, load_backbone_weights):
    `init_from_sgmse` into such a backbone would change what the weights compute."""
    defaults = {k: p.default for k, p in inspect.signature(NCSNpp).parameters.items()}
    keys = ("centered", "negate_output", "pad_mode", "scale_by_sigma", "sigma_division")  # sizes: the weights tell
    norm = lambda v: list(v) if isinstance(v, (list, tuple)) else v  # noqa: E731
    return [f"backbone.{k}={norm(theirs.get(k, defaults[k]))!r} (yours: {norm(ours.get(k, defaults[k]))!r})"
            for k in keys if norm(ours.get(k, defaults[k])) != norm(theirs.get(k, defaults[k]))]
