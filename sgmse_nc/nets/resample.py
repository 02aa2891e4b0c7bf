"""FIR up/down-sampling by 2 (StyleGAN2's upfirdn2d) in plain PyTorch.

NCSN++ resamples its feature maps with a separable FIR filter ([1, 3, 3, 1] by default) instead of
nearest/average pooling. The operation is: insert zeros (up), pad, filter each channel with the 2-D
kernel, keep every `down`-th sample. `upfirdn2d` writes that definition out literally (a depthwise
convolution of the zero-stuffed, padded input); the network uses the equivalent fast forms:
downsampling as one strided depthwise convolution (padding inside the convolution), upsampling as a
strided depthwise *transposed* convolution, which never builds the zero-stuffed map (4x the input's
size) and skips the multiplications by its zeros. No compiled extension; tests pin both forms to each
other and to the definition.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def fir_kernel_2d(taps) -> torch.Tensor:
    """Separable 2-D kernel from 1-D taps, normalised to unit DC gain."""
    k = torch.as_tensor(taps, dtype=torch.float32)
    if k.dim() != 1 or k.numel() < 1:
        raise ValueError(f"fir_kernel must be a 1-D list of taps, got {taps!r}")
    k2 = torch.outer(k, k)
    return k2 / k2.sum()


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Upsample by zero insertion, pad (negative = crop) both spatial axes, FIR-filter, downsample."""
    b, c, h, w = x.shape
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, (0, up - 1, 0, 0, 0, up - 1))
        x = x.reshape(b, c, h * up, w * up)
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    # conv2d correlates; flipping makes it a true convolution with `kernel`, as upfirdn2d defines it.
    weight = kernel.flip(0, 1).to(x.dtype).expand(c, 1, *kernel.shape)
    return F.conv2d(x, weight, stride=down, groups=c)


def _pads(kernel: torch.Tensor, factor: int, up: bool) -> tuple[int, int]:
    p = kernel.shape[0] - factor
    return ((p + 1) // 2 + factor - 1, p // 2) if up else ((p + 1) // 2, p // 2)


def fir_upsample_reference(x: torch.Tensor, kernel: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """fir_upsample by the definition (zero-stuffing, padding, depthwise filtering)."""
    return upfirdn2d(x, kernel * factor**2, up=factor, pad=_pads(kernel, factor, up=True))


def fir_downsample_reference(x: torch.Tensor, kernel: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """fir_downsample by the definition (padding, depthwise filtering, decimation)."""
    return upfirdn2d(x, kernel, down=factor, pad=_pads(kernel, factor, up=False))


def fir_upsample(x: torch.Tensor, kernel: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, H*factor, W*factor]; constant inputs keep their value.

    A transposed convolution with stride `factor` is exactly "insert zeros, then convolve with the
    kernel" (no flip: it scatters each input sample with the kernel). Its full output is k - factor
    samples longer per axis than upfirdn2d's and starts (k - factor) // 2 earlier: symmetric padding.
    """
    p = kernel.shape[0] - factor
    if p % 2:  # the crop would be asymmetric, which conv_transpose2d cannot express
        return fir_upsample_reference(x, kernel, factor)
    c = x.shape[1]
    weight = (kernel * factor**2).to(x.dtype).expand(c, 1, *kernel.shape)
    return F.conv_transpose2d(x, weight, stride=factor, padding=p // 2, groups=c)


def fir_downsample(x: torch.Tensor, kernel: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, H/factor, W/factor]; constant inputs keep their value."""
    p = kernel.shape[0] - factor
    if p % 2:  # asymmetric padding, which conv2d cannot express
        return fir_downsample_reference(x, kernel, factor)
    c = x.shape[1]
    weight = kernel.flip(0, 1).to(x.dtype).expand(c, 1, *kernel.shape)
    return F.conv2d(x, weight, stride=factor, padding=p // 2, groups=c)


def naive_upsample(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Nearest-neighbour upsampling (used when fir=False)."""
    return x.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


def naive_downsample(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Average pooling (used when fir=False)."""
    return F.avg_pool2d(x, factor)


class Resample(torch.nn.Module):
    """Parameter-free up- or down-sampling by 2, FIR-filtered or naive.

    The FIR kernel is a non-persistent buffer: it follows .to(device) but never enters the state
    dict, so checkpoints keep the reference's key names.
    """

    def __init__(self, up: bool, fir: bool = True, fir_kernel=(1, 3, 3, 1)):
        super().__init__()
        self.up, self.fir = up, fir
        self.register_buffer("kernel", fir_kernel_2d(fir_kernel), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fir:
            return fir_upsample(x, self.kernel) if self.up else fir_downsample(x, self.kernel)
        return naive_upsample(x) if self.up else naive_downsample(x)
