from __future__ import annotations

import torch
from torch import nn


class NoEncoder(nn.Module):
    """The unconditional SGMSE+ baseline: no embedding."""

    def __init__(self, embed_dim: int = 0):
        super().__init__()
        if embed_dim:
            raise ValueError("encoder 'none' has no embedding: set encoder.embed_dim to 0")
        self.embed_dim = 0

    def forward(self, r: torch.Tensor, r_wav: torch.Tensor) -> None:
        return None
