from __future__ import annotations

import torch
from torch import nn


def _block(c_in: int, c_out: int) -> nn.Sequential:
    # GroupNorm, not BatchNorm: independent of the per-GPU batch size and of which examples CFG drops.
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.GroupNorm(min(8, c_out), c_out), nn.SiLU())


class CNNEncoder(nn.Module):
    """Four stride-2 conv blocks on the reference's complex spectrogram [B, 2, F, T] (real, imaginary),
    adaptive average pooling over time (frequency kept at `pooled_bins`), two linear layers → [B, embed_dim]."""

    def __init__(self, embed_dim: int = 512, channels: tuple[int, ...] = (32, 64, 128, 256), pooled_bins: int = 4):
        super().__init__()
        if len(channels) != 4:
            raise ValueError(f"the CNN encoder has four conv blocks; got channels={list(channels)}")
        self.embed_dim = embed_dim
        chans = (2, *channels)
        self.convs = nn.Sequential(*[_block(a, b) for a, b in zip(chans[:-1], chans[1:])])
        self.pool = nn.AdaptiveAvgPool2d((pooled_bins, 1))
        self.head = nn.Sequential(nn.Linear(channels[-1] * pooled_bins, embed_dim), nn.SiLU(),
                                  nn.Linear(embed_dim, embed_dim))

    def forward(self, r: torch.Tensor, r_wav: torch.Tensor | None = None) -> torch.Tensor:
        h = torch.cat([r.real, r.imag], dim=1)  # [B, 2, F, T]
        h = self.pool(self.convs(h)).flatten(1)
        return self.head(h)
