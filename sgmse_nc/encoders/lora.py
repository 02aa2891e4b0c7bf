"""LoRA adapters (peft) on a frozen pre-trained audio tower.

peft puts low-rank matrices A [rank, in] and B [out, rank] beside each targeted layer W of the tower, which then
computes W x + (alpha / rank) B A x. B starts at zero, so an adapted tower starts as exactly the frozen one.
The tower stays frozen and out of the encoder's state (it comes back from its weight file, checked by sha256);
`add_lora` returns the adapters as one module for the encoder to register: they, not the tower, are then its
parameters (trained, averaged by the EMA, synced by DDP, saved in checkpoints).

There is no LoRA dropout: the tower always runs in eval mode (batch-norm statistics kept), where dropout is off.
"""
from __future__ import annotations

import torch
from torch import nn

from sgmse_nc.errors import OptionError

# HTSAT's attention projections (the usual LoRA targets); its MLPs are `mlp.fc1` / `mlp.fc2`.
DEFAULT_TARGETS = ("qkv", "attn.proj")


def lora_settings(lora: dict | None) -> tuple[int, float, list[str]]:
    """(rank, alpha, targets) of an `encoder.lora` node; rank 0 (or no node) means no adapters."""
    lora = dict(lora or {})
    unknown = sorted(set(lora) - {"rank", "alpha", "targets"})
    if unknown:
        raise OptionError(f"encoder.lora.{unknown[0]}: not a LoRA setting (rank, alpha, targets).")
    rank, alpha = lora.get("rank") or 0, lora.get("alpha", 16)
    targets = lora.get("targets") or list(DEFAULT_TARGETS)
    if isinstance(targets, str):
        targets = [targets]
    if not isinstance(rank, int) or rank < 0:
        raise OptionError(f"encoder.lora.rank={rank!r}: a whole number, 0 (no adapters) or more (e.g. 8).")
    if not isinstance(alpha, (int, float)) or alpha <= 0:
        raise OptionError(f"encoder.lora.alpha={alpha!r}: a number above 0 (the adapters' scale is alpha / rank).")
    return rank, float(alpha), [str(t) for t in targets]


def add_lora(tower: nn.Module, rank: int, alpha: float, targets: list[str]) -> nn.ModuleDict:
    """Put LoRA adapters on the tower's layers named by `targets` (a layer's name or the end of it, after a dot)
    and return them: {layer path with '/' for '.': {"A": ..., "B": ...}}. The tower's own weights are frozen."""
    # imported on use: peft imports transformers (seconds), which configs without LoRA never need
    from peft import LoraConfig, inject_adapter_in_model
    from peft.tuners.lora import LoraLayer

    for p in tower.parameters():
        p.requires_grad_(False)
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets, lora_dropout=0.0, bias="none")
    try:
        with torch.device("cpu"):  # beside the tower, which is built on the CPU (also under a meta device)
            inject_adapter_in_model(config, tower)
    except ValueError as err:  # a target that names no layer, or a layer type LoRA does not adapt
        linear = sorted({".".join(name.split(".")[-2:]) for name, m in tower.named_modules()
                         if isinstance(m, nn.Linear)})
        raise OptionError(f"encoder.lora.targets={targets}: {str(err).splitlines()[0]} The tower's linear layers "
                          f"end in e.g. {', '.join(linear[:8])}.") from None
    return nn.ModuleDict({name.replace(".", "/"): nn.ModuleDict({"A": m.lora_A, "B": m.lora_B})
                          for name, m in tower.named_modules() if isinstance(m, LoraLayer)})
