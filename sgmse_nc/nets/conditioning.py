"""How a noise-reference embedding z_r enters the score network.

A global embedding [B, D] is projected to the width of NCSN++'s time embedding and added to it, so it
reaches every residual block through the blocks' own time-embedding bias (`Dense_0`). The last layer
starts at zero: a fresh conditional network computes exactly what the unconditional one computes,
which lets training start from SGMSE+ weights without disturbing them.

Token sequences [B, L, D] (a later encoder) are meant to enter through cross-attention blocks beside
the self-attention ones; those modules will live here too, outside the backbone's `all_modules`, so
SGMSE+ checkpoints keep loading.
"""
from __future__ import annotations

import torch
from torch import nn


class GlobalConditioning(nn.Module):
    """z_r [B, cond_dim] -> additive time-embedding offset [B, temb_dim] (Linear, SiLU, zero Linear)."""

    def __init__(self, cond_dim: int, temb_dim: int, hidden_dim: int | None = None):
        super().__init__()
        if cond_dim <= 0:
            raise ValueError(f"GlobalConditioning needs cond_dim > 0, got {cond_dim}")
        hidden_dim = hidden_dim or temb_dim
        self.cond_dim = cond_dim
        self.net = nn.Sequential(nn.Linear(cond_dim, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, temb_dim))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        if cond.dim() != 2 or cond.shape[1] != self.cond_dim:
            raise ValueError(f"expected a global condition of shape [B, {self.cond_dim}], got "
                             f"{tuple(cond.shape)}; check that the encoder's embed_dim matches the "
                             f"backbone's cond_dim")
        return self.net(cond)
