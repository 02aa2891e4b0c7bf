"""How a noise-reference condition (sgmse_nc.condition.Condition) enters the score network.

A global embedding [B, D] is projected to the width of NCSN++'s time embedding and added to it, so it
reaches every residual block through the blocks' own time-embedding bias (`Dense_0`). A token sequence
[B, L, D_tok] enters through cross-attention blocks at configured resolutions: queries from the feature
map, keys and values from the tokens, padded tokens masked out.

The last layer of both starts at zero: a fresh conditional network computes exactly what the
unconditional one computes, which lets training start from SGMSE+ weights without disturbing them. Both
live outside the backbone's `all_modules`, so SGMSE+ checkpoints keep loading strictly.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import group_norm


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


class CrossAttention(nn.Module):
    """Multi-head cross-attention from a feature map h [B, C, F, T] to tokens [B, L, token_dim], residual.

    Queries come from every (frequency, time) position of the group-normalised map; keys and values from
    the tokens. `mask` [B, L] (True = real token) hides padding; a row with no real token (an all-masked,
    i.e. null, sequence) adds nothing. The output projection starts at zero (identity at initialisation).
    """

    def __init__(self, channels: int, token_dim: int, heads: int = 4):
        super().__init__()
        if channels % heads:
            raise ValueError(f"cross-attention at {channels} channels needs heads dividing it, got heads={heads}")
        self.heads = heads
        self.norm = group_norm(channels)
        self.query = nn.Linear(channels, channels)
        self.key_value = nn.Linear(token_dim, 2 * channels)
        self.out = nn.Linear(channels, channels)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, h: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, c, f, t = h.shape
        split = lambda z: z.unflatten(-1, (self.heads, c // self.heads)).transpose(1, 2)  # [B, heads, N, c/h]
        q = split(self.query(self.norm(h).flatten(2).transpose(1, 2)))
        k, v = (split(z) for z in self.key_value(tokens.to(h.dtype)).chunk(2, dim=-1))
        attn_mask = None if mask is None else mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        if mask is not None:  # all-masked rows come out NaN: they attend to nothing
            out = torch.where(mask.any(dim=1).view(-1, 1, 1, 1), out, torch.zeros_like(out))
        out = self.out(out.transpose(1, 2).flatten(2))  # [B, F*T, C]
        return h + out.view(b, f, t, c).permute(0, 3, 1, 2)  # out of place: h's layout, NCHW or NHWC
