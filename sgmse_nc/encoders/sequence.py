"""Token encoder for cross-attention: the CNN encoder's conv stack without the global pooling, so
non-stationary noise keeps its time structure."""
from __future__ import annotations

import torch
from torch import nn

from sgmse_nc.condition import Condition
from sgmse_nc.encoders.base import Encoder
from sgmse_nc.encoders.cnn import as_channels, conv_stack


class SequenceEncoder(Encoder):
    """Conv stack -> adaptive average pooling to a (pooled_bins x num_tokens) grid -> one token per time cell,
    projected (Linear, SiLU, Linear) to [B, num_tokens, token_dim]. Any reference length gives num_tokens
    tokens (short ones are stretched by the pooling), so no padding mask is needed.

    embed_dim > 0 also returns a global embedding (the tokens' mean, projected): both paths at once.
    """

    def __init__(self, token_dim: int = 256, num_tokens: int = 16, embed_dim: int = 0,
                 channels: tuple[int, ...] = (32, 64, 128, 256), pooled_bins: int = 4):
        super().__init__()
        if token_dim <= 0 or num_tokens <= 0:
            raise ValueError(f"the sequence encoder needs token_dim > 0 and num_tokens > 0, got {token_dim}, "
                             f"{num_tokens}")
        self.token_dim, self.num_tokens, self.embed_dim = token_dim, num_tokens, embed_dim
        self.convs = conv_stack(channels)
        self.pool = nn.AdaptiveAvgPool2d((pooled_bins, num_tokens))
        self.head = nn.Sequential(nn.Linear(channels[-1] * pooled_bins, token_dim), nn.SiLU(),
                                  nn.Linear(token_dim, token_dim))
        self.global_head = nn.Linear(token_dim, embed_dim) if embed_dim else None

    def forward(self, r: torch.Tensor, r_wav: torch.Tensor | None = None):
        h = self.pool(self.convs(as_channels(r)))  # [B, C, bins, L]
        tokens = self.head(h.flatten(1, 2).transpose(1, 2))  # [B, L, C * bins] -> [B, L, token_dim]
        if self.global_head is None:
            return tokens
        return Condition(embedding=self.global_head(tokens.mean(dim=1)), tokens=tokens)
