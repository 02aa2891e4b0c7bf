"""Exponential moving average of the *trainable* parameters only.

Lightning's EMAWeightAveraging copies the whole module, which would duplicate a frozen pre-trained encoder
(CLAP) for nothing; this keeps one shadow tensor per trainable parameter. Like SGMSE+ (torch_ema with
num_updates), the decay warms up as min(decay, (1 + n) / (10 + n)) so early checkpoints are usable.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn


class ParameterEMA:
    def __init__(self, module: nn.Module, decay: float = 0.999):
        self.decay = decay
        self.num_updates = 0
        self.names = [n for n, p in module.named_parameters() if p.requires_grad]
        self.shadow = [p.detach().clone() for n, p in module.named_parameters() if p.requires_grad]

    def _params(self, module: nn.Module) -> list[torch.Tensor]:
        named = dict(module.named_parameters())
        return [named[n] for n in self.names]

    def _follow(self, params: list[torch.Tensor]) -> None:
        if self.shadow and self.shadow[0].device != params[0].device:
            self.shadow = [s.to(params[0].device) for s in self.shadow]

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        params = self._params(module)
        self._follow(params)
        self.num_updates += 1
        decay = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        torch._foreach_lerp_(self.shadow, [p.detach() for p in params], 1 - decay)

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> None:
        params = self._params(module)
        self._follow(params)
        torch._foreach_copy_(params, self.shadow)

    @contextmanager
    def swapped_in(self, module: nn.Module):
        """Temporarily replace the module's trainable weights by their averages."""
        params = self._params(module)
        raw = [p.detach().clone() for p in params]
        self.copy_to(module)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(params, raw)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "num_updates": self.num_updates,
                "shadow": dict(zip(self.names, [s.cpu() for s in self.shadow]))}

    def load_state_dict(self, state: dict) -> None:
        missing = [n for n in self.names if n not in state["shadow"]]
        if missing:
            raise KeyError(f"EMA state lacks {len(missing)} parameter(s), e.g. {missing[:3]}")
        self.decay, self.num_updates = state["decay"], state["num_updates"]
        device = self.shadow[0].device if self.shadow else "cpu"
        self.shadow = [state["shadow"][n].to(device) for n in self.names]
