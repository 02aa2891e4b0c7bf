"""Building blocks of NCSN++ (Song et al., 2021) as used by SGMSE+.

Attribute names (W, Conv_0, GroupNorm_0, Dense_0, NIN_0, ...) follow the reference implementation so
that SGMSE+ state dicts load without renaming. Initialisation follows DDPM: variance scaling
("fan_avg", uniform), biases at zero, `init_scale=0` meaning a near-zero (1e-10) scale so residual
branches start almost silent.

Speed without changing a single output (the layout and the arithmetic stay the reference's):
1x1 convolutions run as matrix products (torch's conv takes a slow path for them); in training,
GroupNorm + SiLU (+ the 3x3 convolution that follows) is one autograd node that keeps only its input
and the group statistics, recomputing the cheap normalised map in backward instead of storing it and
the convolution's input (about a third of the activation memory of the reference); activations and
residual sums work in place on tensors nobody else holds; a dropout of 0 is skipped.
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


def is_channels_last(x: torch.Tensor) -> bool:
    """NHWC strides (and not also NCHW ones, as a single channel or pixel would have)."""
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def pointwise(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A 1x1 convolution as one matrix product: x [B, I, H, W], weight [O, I] -> [B, O, H, W].

    A channels_last x stays channels_last: it is one [B*H*W, I] x [I, O] product, no copy."""
    if is_channels_last(x):
        return F.linear(x.permute(0, 2, 3, 1), weight, bias).permute(0, 3, 1, 2)
    b, _, h, w = x.shape
    x = x.reshape(b, -1, h * w)
    weight = weight.expand(b, *weight.shape)  # bmm (not matmul, which may fold to a transposed result)
    if bias is None:
        out = torch.bmm(weight, x)
    else:
        out = torch.baddbmm(bias[:, None].expand(b, -1, h * w), weight, x)
    return out.view(b, -1, h, w)


class Conv1x1(nn.Conv2d):
    """nn.Conv2d with kernel_size=1 (same parameters and state dict), computed by `pointwise`."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(in_ch, out_ch, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pointwise(x, self.weight[:, :, 0, 0], self.bias)


def conv1x1(in_ch: int, out_ch: int, init_scale: float = 1.0) -> Conv1x1:
    conv = Conv1x1(in_ch, out_ch)
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


class _GroupNormSiLU(torch.autograd.Function):
    """silu(group_norm(x)) saving x and the group statistics only: the normalised map is recomputed in
    backward (one cheap pass) instead of being stored, a full activation less per block in training.
    Uses the very kernels F.group_norm and F.silu use, so values and gradients are the same."""

    @staticmethod
    def forward(ctx, x, weight, bias, groups: int, eps: float):
        n, c = x.shape[:2]
        hw = x[0, 0].numel()
        y, mean, rstd = torch.native_group_norm(x, weight, bias, n, c, hw, groups, eps)
        ctx.save_for_backward(x, weight, bias, mean, rstd)
        ctx.sizes = (n, c, hw, groups, eps)
        return F.silu(y, inplace=True)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, weight, bias, mean, rstd = ctx.saved_tensors
        n, c, hw, groups, eps = ctx.sizes
        y = torch.native_group_norm(x, weight, bias, n, c, hw, groups, eps)[0]
        grad_y = torch.ops.aten.silu_backward(grad, y)
        grad_x, grad_w, grad_b = torch.ops.aten.native_group_norm_backward(
            grad_y, x, mean, rstd, weight, n, c, hw, groups, list(ctx.needs_input_grad[:3]))
        return grad_x, grad_w, grad_b, None, None


class _GroupNormSiLUConv(torch.autograd.Function):
    """conv(silu(group_norm(x))) saving only x, the group statistics and the weights: the convolution's
    input (the largest activation of a block) is recomputed in backward, where the weight gradient needs
    it. Same kernels as the plain composition, so the same values and gradients."""

    @staticmethod
    def forward(ctx, x, weight, bias, conv_weight, conv_bias, groups: int, eps: float, conv: dict):
        n, c = x.shape[:2]
        hw = x[0, 0].numel()
        y, mean, rstd = torch.native_group_norm(x, weight, bias, n, c, hw, groups, eps)
        out = F.conv2d(F.silu(y, inplace=True), conv_weight, conv_bias, **conv)
        ctx.save_for_backward(x, weight, bias, mean, rstd, conv_weight)
        ctx.sizes, ctx.conv, ctx.has_conv_bias = (n, c, hw, groups, eps), conv, conv_bias is not None
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, weight, bias, mean, rstd, conv_weight = ctx.saved_tensors
        n, c, hw, groups, eps = ctx.sizes
        y = torch.native_group_norm(x, weight, bias, n, c, hw, groups, eps)[0]
        conv = ctx.conv
        grad_a, grad_cw, grad_cb = torch.ops.aten.convolution_backward(
            grad, F.silu(y), conv_weight, [conv_weight.shape[0]] if ctx.has_conv_bias else None,
            list(conv["stride"]), list(conv["padding"]), list(conv["dilation"]), False, [0, 0], conv["groups"],
            [any(ctx.needs_input_grad[:3]), ctx.needs_input_grad[3], ctx.needs_input_grad[4]])
        grad_x = grad_w = grad_b = None
        if any(ctx.needs_input_grad[:3]):
            grad_y = torch.ops.aten.silu_backward(grad_a, y)
            grad_x, grad_w, grad_b = torch.ops.aten.native_group_norm_backward(
                grad_y, x, mean, rstd, weight, n, c, hw, groups, list(ctx.needs_input_grad[:3]))
        return grad_x, grad_w, grad_b, grad_cw, grad_cb, None, None, None


def _fusable(norm: nn.GroupNorm, act: nn.Module, x: torch.Tensor) -> bool:
    """Whether the memory-lean autograd nodes apply: SiLU, affine GroupNorm, grad wanted, no autocast."""
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or norm.weight.requires_grad)
    return (isinstance(act, nn.SiLU) and needs_grad and norm.affine
            and not torch.is_autocast_enabled(x.device.type))


def norm_act_conv(norm: nn.GroupNorm, act: nn.Module, conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """conv(act(norm(x))); in training with SiLU one node that does not keep the conv's input."""
    if _fusable(norm, act, x) and conv.padding_mode == "zeros" and isinstance(conv.padding, tuple):
        options = dict(stride=conv.stride, padding=conv.padding, dilation=conv.dilation, groups=conv.groups)
        return _GroupNormSiLUConv.apply(x, norm.weight, norm.bias, conv.weight, conv.bias, norm.num_groups,
                                        norm.eps, options)
    return conv(norm_act(norm, act, x))


def norm_act(norm: nn.GroupNorm, act: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """act(norm(x)), fused and memory-lean for SiLU (NCSN++'s "swish")."""
    if not isinstance(act, nn.SiLU):
        return act(norm(x))
    if _fusable(norm, act, x):
        return _GroupNormSiLU.apply(x, norm.weight, norm.bias, norm.num_groups, norm.eps)
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or norm.weight.requires_grad)
    return F.silu(norm(x), inplace=not needs_grad)  # in place is free when nothing is kept for backward


def residual_sum(x: torch.Tensor, h: torch.Tensor, skip_rescale: bool) -> torch.Tensor:
    """(x + h) / sqrt(2) (or x + h), written into h: the branch output is kept by no one."""
    h = h.add_(x)
    return h.div_(math.sqrt(2.0)) if skip_rescale else h


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
        return pointwise(x, self.W.t(), self.b)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The same map on a token matrix: x [B, L, in] -> [B, L, out]."""
        return torch.addmm(self.b, x.reshape(-1, x.shape[-1]), self.W).view(*x.shape[:-1], -1)


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
        tokens = self.GroupNorm_0(x).flatten(2).transpose(1, 2)  # [B, H*W, C]
        q, k, v = (nin.tokens(tokens) for nin in (self.NIN_0, self.NIN_1, self.NIN_2))
        out = F.scaled_dot_product_attention(q, k, v)  # scale 1/sqrt(C), as in the reference
        out = x + self.NIN_3.tokens(out).view(b, h, w, c).permute(0, 3, 1, 2)  # out of place: x's layout
        return out.div_(math.sqrt(2.0)) if self.skip_rescale else out


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
        return p.add_(h) if self.method == "sum" else torch.cat([p, h], dim=1)


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
        if self.resample is None:
            h = norm_act_conv(self.GroupNorm_0, self.act, self.Conv_0, x)
        else:
            h = self.resample(norm_act(self.GroupNorm_0, self.act, x))
            h, x = self.Conv_0(h), self.resample(x)
        if temb is not None:
            h = h.add_(self.Dense_0(self.act(temb))[:, :, None, None])  # conv keeps its input, not h
        if self.training and self.Dropout_0.p > 0:
            h = self.Conv_1(self.Dropout_0(norm_act(self.GroupNorm_1, self.act, h)))
        else:
            h = norm_act_conv(self.GroupNorm_1, self.act, self.Conv_1, h)
        if self.Conv_2 is not None:
            x = self.Conv_2(x)
        return residual_sum(x, h, self.skip_rescale)
