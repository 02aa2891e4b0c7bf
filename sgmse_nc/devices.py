"""Which torch device a command may use: the name the user gave, or one `error:` line naming the devices this
machine has (instead of a traceback from deep inside torch.load or the first tensor moved there)."""
from __future__ import annotations

import os

import torch

from sgmse_nc.errors import OptionError


def available_devices() -> list[str]:
    """The device names usable here, e.g. ['cpu'] or ['cpu', 'cuda', 'cuda:0', 'cuda:1']."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        names.append("mps")
    return names


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(name: str | None, option: str = "--device") -> str:
    """`name` when this machine has that device (None: the default, cuda when available, else cpu); otherwise an
    OptionError naming the option (a flag, or `key=value` for a config key), why the device is missing and what
    is available."""
    if name is None:
        return default_device()
    available = ", ".join(available_devices())
    option = option if "=" in option else f"{option} {name}"  # "--device cuda" or "trainer.accelerator=gpu"
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise OptionError(f"{option}: not a device name; available here: {available}.") from None
    if device.type == "cpu":
        return name
    if device.type == "cuda" and torch.cuda.is_available():
        if device.index is None or device.index < torch.cuda.device_count():
            return name
        why = f"this machine has {torch.cuda.device_count()} CUDA device(s)"
    elif device.type == "cuda":
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        why = ("this torch was built without CUDA" if torch.version.cuda is None else
               "no CUDA device is visible" + (f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""))
    elif device.type in available_devices():
        return name
    else:
        why = f"this machine has no {device.type} device"
    raise OptionError(f"{option}: {why}; available here: {available}.")
