"""Building blocks of NCSN++ (Song et al., 2021) as used by SGMSE+.

Attribute names (W, Conv_0, GroupNorm_0, Dense_0, NIN_0, ...) follow the reference implementation so
that SGMSE+ state dicts load without renaming. Initialisation follows DDPM: variance scaling
("fan_avg", uniform), biases at zero, `init_scale=0` meaning a near-zero (1e-10) scale so residual
branches start almost silent.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .resample import Resample

ACTIVATIONS = {"swish": nn.SiLU, "silu": nn.SiLU, "relu": nn.ReLU, "elu": nn.ELU,
               "lrelu": lambda: nn.LeakyReLU(negative_slope=0.2)}


def get_activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"nonlinearity {name!r} unknown; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


@torch.no_grad()
def variance_scaling_(weight: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """DDPM's default init in place: uniform with variance scale / mean(fan_in, fan_out).

    Fans are read as (dim 1, dim 0) times the receptive field, for Linear/Conv weights [out, in, ...]
    and for NIN weights [in, out] alike (the average makes the order irrelevant).
    """
    scale = 1e-10 if scale == 0 else scale
    receptive = weight[0, 0].numel() if weight.dim() > 2 else 1
    fan_avg = (weight.shape[0] + weight.shape[1]) * receptive / 2
    bound = math.sqrt(3 * scale / fan_avg)
    return weight.uniform_(-bound, bound)


def conv3x3(in_ch: int, out_ch: int, init_scale: float = 1.0) -> nn.Conv2d:
    conv = nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1)
    variance_scaling_(conv.weight, init_scale)
    nn.init.zeros_(conv.bias)
    return conv


def conv1x1(in_ch: int, out_ch: int, init_scale: float = 1.0) -> nn.Conv2d:
    conv = nn.Conv2d(in_ch, out_ch, kernel_size=1)
    variance_scaling_(conv.weight, init_scale)
    nn.init.zeros_(conv.bias)
    return conv


def dense(in_dim: int, out_dim: int) -> nn.Linear:
    layer = nn.Linear(in_dim, out_dim)
    variance_scaling_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=min(channels // 4, 32), num_channels=channels, eps=1e-6)


class GaussianFourierProjection(nn.Module):
    """Random Fourier features of a scalar (SGMSE+ feeds log t): [B] -> [B, 2 * embedding_size]."""

    def __init__(self, embedding_size: int, scale: float = 16.0):
        super().__init__()
        # A frozen Parameter (not a buffer) so the state dict key matches the reference.
        self.W = nn.Parameter(torch.randn(embedding_size) * scale, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        proj = x[:, None] * self.W[None, :] * (2 * math.pi)
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)


class NIN(nn.Module):
    """Per-pixel linear map over channels ("network in network"), weight stored as [in, out]."""

    def __init__(self, in_dim: int, out_dim: int, init_scale: float = 0.1):
        super().__init__()
        self.W = nn.Parameter(variance_scaling_(torch.empty(in_dim, out_dim), init_scale))
        self.b = nn.Parameter(torch.zeros(out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.W.t()[:, :, None, None], self.b)


class AttnBlock(nn.Module):
    """Single-head self-attention over all H*W positions, residual, optionally rescaled by 1/sqrt(2)."""

    def __init__(self, channels: int, skip_rescale: bool = True, init_scale: float = 0.0):
        super().__init__()
        self.GroupNorm_0 = group_norm(channels)
        self.NIN_0 = NIN(channels, channels)
        self.NIN_1 = NIN(channels, channels)
        self.NIN_2 = NIN(channels, channels)
        self.NIN_3 = NIN(channels, channels, init_scale=init_scale)
        self.skip_rescale = skip_rescale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        normed = self.GroupNorm_0(x)
        q, k, v = (nin(normed).flatten(2).transpose(1, 2) for nin in (self.NIN_0, self.NIN_1, self.NIN_2))
        out = F.scaled_dot_product_attention(q, k, v)  # scale 1/sqrt(C), as in the reference
        out = self.NIN_3(out.transpose(1, 2).reshape(b, c, h, w))
        return (x + out) / math.sqrt(2.0) if self.skip_rescale else x + out


class Combine(nn.Module):
    """Merges the input pyramid into the down path: 1x1 conv, then sum or concatenation."""

    def __init__(self, dim1: int, dim2: int, method: str = "sum"):
        super().__init__()
        if method not in ("sum", "cat"):
            raise ValueError(f"progressive_combine must be 'sum' or 'cat', got {method!r}")
        self.Conv_0 = conv1x1(dim1, dim2)
        self.method = method

    def forward(self, pyramid: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        p = self.Conv_0(pyramid)
        return p + h if self.method == "sum" else torch.cat([p, h], dim=1)


class ResnetBlockBigGAN(nn.Module):
    """BigGAN-style residual block with time-embedding bias and optional up/down-sampling by 2.

    `temb` carries the noise level (and, in sgmse_nc, the added global condition); each block maps it
    to a per-channel bias, which is how conditioning reaches every resolution.
    """

    def __init__(self, act: nn.Module, in_ch: int, out_ch: int | None = None, temb_dim: int | None = None,
                 up: bool = False, down: bool = False, dropout: float = 0.0, fir: bool = True,
                 fir_kernel=(1, 3, 3, 1), skip_rescale: bool = True, init_scale: float = 0.0):
        super().__init__()
        if up and down:
            raise ValueError("a residual block resamples up or down, not both")
        out_ch = out_ch or in_ch
        self.act = act
        self.GroupNorm_0 = group_norm(in_ch)
        self.resample = Resample(up=up, fir=fir, fir_kernel=fir_kernel) if (up or down) else None
        self.Conv_0 = conv3x3(in_ch, out_ch)
        if temb_dim is not None:
            self.Dense_0 = dense(temb_dim, out_ch)
        self.GroupNorm_1 = group_norm(out_ch)
        self.Dropout_0 = nn.Dropout(dropout)
        self.Conv_1 = conv3x3(out_ch, out_ch, init_scale=init_scale)
        # The shortcut needs a 1x1 conv whenever the channels change or the block resamples.
        self.Conv_2 = conv1x1(in_ch, out_ch) if (in_ch != out_ch or up or down) else None
        self.skip_rescale = skip_rescale

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.act(self.GroupNorm_0(x))
        if self.resample is not None:
            h, x = self.resample(h), self.resample(x)
        h = self.Conv_0(h)
        if temb is not None:
            h = h + self.Dense_0(self.act(temb))[:, :, None, None]
        h = self.Dropout_0(self.act(self.GroupNorm_1(h)))
        h = self.Conv_1(h)
        if self.Conv_2 is not None:
            x = self.Conv_2(x)
        return (x + h) / math.sqrt(2.0) if self.skip_rescale else x + h
