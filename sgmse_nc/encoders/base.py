from __future__ import annotations

import torch
from torch import nn


class Encoder(nn.Module):
    """What every noise encoder declares: the sizes of the condition it returns.

    embed_dim: global embedding [B, embed_dim] (0 = none); token_dim / num_tokens: tokens [B, num_tokens,
    token_dim] (0 = none). forward(r, r_wav) returns a tensor of one of those shapes, a
    sgmse_nc.condition.Condition holding both, or None.
    """

    embed_dim: int = 0
    token_dim: int = 0
    num_tokens: int = 0


class NoEncoder(Encoder):
    """The unconditional SGMSE+ baseline: no embedding."""

    def __init__(self, embed_dim: int = 0):
        super().__init__()
        if embed_dim:
            raise ValueError("encoder 'none' has no embedding: set encoder.embed_dim to 0")

    def forward(self, r: torch.Tensor, r_wav: torch.Tensor) -> None:
        return None
