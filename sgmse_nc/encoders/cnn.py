from __future__ import annotations

import torch
from torch import nn

from sgmse_nc.encoders.base import Encoder


def _block(c_in: int, c_out: int) -> nn.Sequential:
    # GroupNorm, not BatchNorm: independent of the per-GPU batch size and of which examples CFG drops.
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.GroupNorm(min(8, c_out), c_out), nn.SiLU())


def conv_stack(channels: tuple[int, ...]) -> nn.Sequential:
    """Four stride-2 conv blocks on the reference's complex spectrogram as 2 real channels (real, imaginary)."""
    if len(channels) != 4:
        raise ValueError(f"the CNN encoder has four conv blocks; got channels={list(channels)}")
    chans = (2, *channels)
    return nn.Sequential(*[_block(a, b) for a, b in zip(chans[:-1], chans[1:])])


def as_channels(r: torch.Tensor) -> torch.Tensor:
    return torch.cat([r.real, r.imag], dim=1)  # complex [B, 1, F, T] -> [B, 2, F, T]


class CNNEncoder(Encoder):
    """Four stride-2 conv blocks on the reference's complex spectrogram [B, 2, F, T] (real, imaginary),
    adaptive average pooling over time (frequency kept at `pooled_bins`), two linear layers → [B, embed_dim]."""

    def __init__(self, embed_dim: int = 512, channels: tuple[int, ...] = (32, 64, 128, 256), pooled_bins: int = 4):
        super().__init__()
        self.embed_dim = embed_dim
        self.convs = conv_stack(channels)
        self.pool = nn.AdaptiveAvgPool2d((pooled_bins, 1))
        self.head = nn.Sequential(nn.Linear(channels[-1] * pooled_bins, embed_dim), nn.SiLU(),
                                  nn.Linear(embed_dim, embed_dim))

    def forward(self, r: torch.Tensor, r_wav: torch.Tensor | None = None) -> torch.Tensor:
        h = self.pool(self.convs(as_channels(r))).flatten(1)
        return self.head(h)
