"""NCSN++ score network of SGMSE+, with an optional noise condition z_r (global and/or tokens).

With default arguments this is SGMSE+'s `ncsnpp` backbone (≈ 65.6 M parameters) with the same
state-dict names (`all_modules.N.…`, `output_layer.…`), so SGMSE+ checkpoints load strictly into it
(see sgmse_nc.diffusion.checkpoints). Differences from the reference are in the interface only:

* forward(x_t, y, t, cond) takes x_t and y separately and returns the score itself (the reference's
  output negated, as SGMSE+'s ScoreModel does);
* conditioning modules (`cond_proj` for a global embedding, `xattn` cross-attention blocks for tokens) sit
  outside `all_modules` and start at zero;
* FIR resampling is plain PyTorch; which levels attend is fixed at construction from `image_size`
  (= the number of frequency bins F, checked at run time), matching the reference's check on the
  frequency axis (dim -2).

Input: complex spectrograms [B, 1, F, T] with F = image_size and T a multiple of `time_multiple`.
"""
from __future__ import annotations

import torch
from torch import nn

from sgmse_nc.condition import Condition, as_condition
from sgmse_nc.spec import PAD_MODES

from .conditioning import CrossAttention, GlobalConditioning
from .layers import AttnBlock, Combine, Conv1x1, GaussianFourierProjection, ResnetBlockBigGAN, conv3x3, dense, \
    get_activation, group_norm, norm_act_conv
from .resample import Resample

IN_CHANNELS = 4  # x_t.real, x_t.imag, y.real, y.imag
SIGMA_DIVISIONS = ("before_output", "after_output")
NUM_TEMB_MODULES = 3  # all_modules[0:3]: Fourier projection, two Linear layers


class NCSNpp(nn.Module):
    """U-Net over the stacked real/imaginary channels of x_t and y; time enters as log t.

    Args mirror SGMSE+'s NCSNpp. Offered: BigGAN residual blocks, `progressive` in {output_skip, none},
    `progressive_input` in {input_skip, none}, `progressive_combine` in {sum, cat}. (The reference's
    'ddpm' blocks and 'residual' output pyramid crash with FIR resampling; its 'residual' input
    pyramid is not ported.)
    cond_dim: size of a global condition z_r (0 = unconditional SGMSE+).
    token_dim: size of condition tokens (0 = none); they enter through cross-attention at the frequency
      resolutions `xattn_resolutions` (after each down-path residual block of that level and after the
      up-path blocks of that level), `xattn_heads` heads.
    Options that make this one network each published SGMSE+ backbone (conf/backbone/):
      ncsnpp      the defaults;
      ncsnpp_v2   negate_output=False (the reference returns the network's output as is), scale_by_sigma=False,
                  pad_mode="reflection";
      ncsnpp_48k  attn_resolutions=(), progressive="none", progressive_input="none", sigma_division="after_output"
                  (the reference divides the output layer's result by t, not its input), pad_mode="reflection".
    sigma_division: where scale_by_sigma divides by t: "before_output" (ncsnpp) or "after_output" (ncsnpp_48k);
      they differ by the output layer's bias / t.
    negate_output: return minus the network's output (as SGMSE+'s ScoreModel does for ncsnpp and ncsnpp_48k).
    pad_mode: how callers pad the time axis to `time_multiple` frames ("zeros" or "reflection",
      sgmse_nc.spec.pad_frames); the network itself never pads.
    channels_last: run the feature maps NHWC (the state dict and weights are unchanged). On CPU oneDNN then
      convolves, normalises and FIR-resamples without reordering (3x3 convolutions at 0.89x a matmul's FLOP/s
      against 0.70x NCHW): a forward takes 0.71-0.88x and a training step 0.83-0.93x the NCHW time
      (bench/ncsnpp_vs_reference.py --nhwc). Off by default: PyTorch's NHWC GroupNorm on CPU loses precision
      where a group's mean is large against its spread (1.2e-4 relative error at mean/std = 6, vs 1.2e-7 NCHW),
      which puts the trained demo models' outputs 1.7-5.5e-5 off the NCHW net's, against 1.4e-6 when only
      GroupNorm runs NCHW (bench/nhwc_precision.py); the GPU side is unmeasured.
    """

    # Submodules that are not part of SGMSE+'s network: checkpoint loading leaves them untouched.
    CONDITIONING_MODULES = ("cond_proj", "xattn")

    def __init__(self, nf: int = 128, ch_mult=(1, 1, 2, 2, 2, 2, 2), num_res_blocks: int = 2,
                 attn_resolutions=(16,), dropout: float = 0.0, fir: bool = True, fir_kernel=(1, 3, 3, 1),
                 skip_rescale: bool = True, init_scale: float = 0.0, fourier_scale: float = 16.0,
                 image_size: int = 256, centered: bool = True, scale_by_sigma: bool = True,
                 nonlinearity: str = "swish", resblock_type: str = "biggan", progressive: str = "output_skip",
                 progressive_input: str = "input_skip", progressive_combine: str = "sum", cond_dim: int = 0,
                 token_dim: int = 0, xattn_resolutions=(), xattn_heads: int = 4, channels_last: bool = False,
                 sigma_division: str = "before_output", negate_output: bool = True, pad_mode: str = "zeros"):
        super().__init__()
        ch_mult, attn_resolutions, fir_kernel = tuple(ch_mult), tuple(attn_resolutions), tuple(fir_kernel)
        if resblock_type != "biggan":
            raise ValueError(f"resblock_type {resblock_type!r} is not supported; use 'biggan' (SGMSE+'s "
                             f"'ddpm' blocks fail with FIR resampling in the reference as well)")
        if progressive not in ("output_skip", "none"):
            raise ValueError(f"progressive must be 'output_skip' or 'none', got {progressive!r}")
        if progressive_input not in ("input_skip", "none"):
            raise ValueError(f"progressive_input must be 'input_skip' or 'none', got {progressive_input!r}")
        num_levels = len(ch_mult)
        if num_levels < 1 or image_size % 2 ** (num_levels - 1):
            raise ValueError(f"image_size {image_size} must be divisible by 2^(len(ch_mult) - 1) = "
                             f"{2 ** (num_levels - 1)}")
        if sigma_division not in SIGMA_DIVISIONS:
            raise ValueError(f"sigma_division must be one of {SIGMA_DIVISIONS}, got {sigma_division!r}")
        if pad_mode not in PAD_MODES:
            raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
        if cond_dim < 0 or token_dim < 0:
            raise ValueError(f"cond_dim and token_dim must be >= 0, got {cond_dim}, {token_dim}")

        self.nf, self.ch_mult, self.num_res_blocks = nf, ch_mult, num_res_blocks
        self.attn_resolutions, self.image_size = attn_resolutions, image_size
        self.centered, self.scale_by_sigma = centered, scale_by_sigma
        self.progressive, self.progressive_input = progressive, progressive_input
        self.cond_dim, self.token_dim = cond_dim, token_dim
        self.channels_last = channels_last
        self.sigma_division, self.negate_output, self.pad_mode = sigma_division, negate_output, pad_mode
        resolutions = [image_size // 2**i for i in range(num_levels)]
        self.attn_levels = frozenset(i for i, res in enumerate(resolutions) if res in attn_resolutions)
        self.xattn_levels = _cross_attention_levels(resolutions, tuple(xattn_resolutions), token_dim)

        # Registration order as in the reference, so parameters() lists the same tensors in the same order.
        self.output_layer = Conv1x1(IN_CHANNELS, 2)  # nn.Conv2d's default init, as the reference
        self.act = act = get_activation(nonlinearity)
        self.pyramid_upsample = Resample(up=True, fir=fir, fir_kernel=fir_kernel)
        self.pyramid_downsample = Resample(up=False, fir=fir, fir_kernel=fir_kernel)

        temb_dim = 4 * nf

        def block(in_ch, out_ch=None, **kw):
            return ResnetBlockBigGAN(act, in_ch, out_ch, temb_dim=temb_dim, dropout=dropout, fir=fir,
                                     fir_kernel=fir_kernel, skip_rescale=skip_rescale, init_scale=init_scale, **kw)

        def attn(ch):
            return AttnBlock(ch, skip_rescale=skip_rescale, init_scale=init_scale)

        def output_head(ch):  # GroupNorm, (activation), conv to the 4 input channels
            return [group_norm(ch), conv3x3(ch, IN_CHANNELS, init_scale=init_scale)]

        modules = [GaussianFourierProjection(nf, fourier_scale), dense(2 * nf, temb_dim), dense(temb_dim, temb_dim)]
        modules.append(conv3x3(IN_CHANNELS, nf))
        skip_ch = [nf]  # channels of every tensor the down path hands to the up path
        ch = nf
        for level in range(num_levels):
            for _ in range(num_res_blocks):
                modules.append(block(ch, nf * ch_mult[level]))
                ch = nf * ch_mult[level]
                if level in self.attn_levels:
                    modules.append(attn(ch))
                skip_ch.append(ch)
            if level != num_levels - 1:
                modules.append(block(ch, down=True))
                if progressive_input == "input_skip":
                    modules.append(Combine(IN_CHANNELS, ch, method=progressive_combine))
                    ch = 2 * ch if progressive_combine == "cat" else ch
                skip_ch.append(ch)

        modules += [block(ch), attn(ch), block(ch)]

        for level in reversed(range(num_levels)):
            for _ in range(num_res_blocks + 1):
                modules.append(block(ch + skip_ch.pop(), nf * ch_mult[level]))
                ch = nf * ch_mult[level]
            if level in self.attn_levels:
                modules.append(attn(ch))
            if progressive == "output_skip":
                modules += output_head(ch)
            if level != 0:
                modules.append(block(ch, up=True))
        if progressive == "none":
            modules += output_head(ch)
        self.all_modules = nn.ModuleList(modules)

        self.cond_proj = GlobalConditioning(cond_dim, temb_dim) if cond_dim > 0 else None
        # Keyed by place in the U-Net; registered after all_modules, so the SGMSE+ layout is untouched.
        self.xattn = nn.ModuleDict({
            **{f"down{lv}_{i}": CrossAttention(nf * ch_mult[lv], token_dim, xattn_heads)
               for lv in self.xattn_levels for i in range(num_res_blocks)},
            **{f"up{lv}": CrossAttention(nf * ch_mult[lv], token_dim, xattn_heads) for lv in self.xattn_levels}})

    @property
    def time_multiple(self) -> int:
        """The number of frames T must be a multiple of this (pad the time axis to it)."""
        return 2 ** (len(self.ch_mult) - 1)

    def forward(self, x_t: torch.Tensor, y: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        """Score s(x_t, y, [z_r,] t): complex [B, 1, F, T]; t [B] (or a scalar) in (0, 1].

        cond: a sgmse_nc.condition.Condition, or a tensor ([B, D] global, [B, L, D] tokens), or None.
        """
        t = self._check_inputs(x_t, y, t)
        cond = as_condition(cond)
        x = torch.cat([x_t.real, x_t.imag, y.real, y.imag], dim=1)
        h = self.real_score(x, t, None if cond is None else cond.embedding, self._tokens(cond))
        return torch.complex(h[:, 0], h[:, 1]).unsqueeze(1)

    def real_score(self, x: torch.Tensor, t: torch.Tensor, embedding: torch.Tensor | None = None,
                   tokens=None) -> torch.Tensor:
        """The network on real tensors: x [B, 4, F, T] (x_t, y as real/imag channels) -> [B, 2, F, T] float32.
        All that `compile_real_score` hands to torch.compile: no complex tensor (inductor has no complex
        code generation), no input checks (they raise in Python)."""
        if not self.centered:
            x = 2 * x - 1
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        h = self._unet(x, self._embedding(t, embedding), tokens)
        sigma = t[:, None, None, None]  # SGMSE+ divides by t (its "sigma"), before or after the output layer
        if self.scale_by_sigma and self.sigma_division == "before_output":
            h = h / sigma
        h = self.output_layer(h).to(x.dtype)  # complex needs float32/64, also under bf16 autocast
        if self.scale_by_sigma and self.sigma_division == "after_output":
            h = h / sigma.to(h.dtype)
        return -h if self.negate_output else h

    def compile_real_score(self, **options) -> None:
        """torch.compile the real-valued network in place (`options` go to torch.compile). Parameter names,
        checkpoints and the complex interface (spectrogram in, score out) stay those of the plain module."""
        self.real_score = torch.compile(self.real_score, **options)

    def _embedding(self, t: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        fourier, dense0, dense1 = self.all_modules[:NUM_TEMB_MODULES]
        temb = dense1(self.act(dense0(fourier(torch.log(t)))))
        if self.cond_proj is not None:
            if z is None:
                raise ValueError(f"this backbone is conditional (cond_dim={self.cond_dim}) and needs `cond` with "
                                 f"a global embedding; pass the null condition (zeros) for unconditional scores")
            temb = temb + self.cond_proj(z.to(temb.dtype))
        elif z is not None:
            raise ValueError("this backbone is unconditional (cond_dim=0) but got `cond`; set the backbone's "
                             "cond_dim to the encoder's embed_dim")
        return temb

    def _tokens(self, cond: Condition | None):
        tokens = None if cond is None else cond.tokens
        if self.token_dim and tokens is None:
            raise ValueError(f"this backbone cross-attends to tokens (token_dim={self.token_dim}) and needs `cond` "
                             f"with tokens; pass the null condition (zero tokens) for unconditional scores")
        if not self.token_dim:
            if tokens is not None:
                raise ValueError("this backbone has no cross-attention but got condition tokens; use an encoder "
                                 "that emits tokens only with backbone.xattn_resolutions set")
            return None
        if tokens.shape[-1] != self.token_dim:
            raise ValueError(f"expected condition tokens [B, L, {self.token_dim}], got {tuple(tokens.shape)}")
        return tokens, cond.mask

    def _cross_attend(self, place: str, h: torch.Tensor, tokens) -> torch.Tensor:
        if tokens is None or place not in self.xattn:
            return h
        return self.xattn[place](h, *tokens)

    def _unet(self, x: torch.Tensor, temb: torch.Tensor, tokens=None) -> torch.Tensor:
        """Walks all_modules in construction order (the order __init__ appended them)."""
        modules = iter(self.all_modules[NUM_TEMB_MODULES:])
        num_levels = len(self.ch_mult)

        x_pyramid = x
        hs = [next(modules)(x)]
        for level in range(num_levels):
            for i in range(self.num_res_blocks):
                h = next(modules)(hs[-1], temb)
                if level in self.attn_levels:
                    h = next(modules)(h)
                hs.append(self._cross_attend(f"down{level}_{i}", h, tokens))
            if level != num_levels - 1:
                h = next(modules)(hs[-1], temb)  # downsampling block
                if self.progressive_input == "input_skip":
                    x_pyramid = self.pyramid_downsample(x_pyramid)
                    h = next(modules)(x_pyramid, h)
                hs.append(h)

        h = hs[-1]
        h = next(modules)(h, temb)
        h = next(modules)(h)
        h = next(modules)(h, temb)

        out_pyramid = None
        for level in reversed(range(num_levels)):
            for _ in range(self.num_res_blocks + 1):
                h = next(modules)(torch.cat([h, hs.pop()], dim=1), temb)
            if level in self.attn_levels:
                h = next(modules)(h)
            h = self._cross_attend(f"up{level}", h, tokens)
            if self.progressive == "output_skip":
                norm, conv = next(modules), next(modules)
                head = norm_act_conv(norm, self.act, conv, h)
                out_pyramid = head if out_pyramid is None else self.pyramid_upsample(out_pyramid) + head
            if level != 0:
                h = next(modules)(h, temb)  # upsampling block

        if self.progressive == "output_skip":
            h = out_pyramid
        else:
            norm, conv = next(modules), next(modules)
            h = norm_act_conv(norm, self.act, conv, h)
        assert next(modules, None) is None and not hs, "forward does not match the modules built in __init__"
        return h

    def _check_inputs(self, x_t: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if not (x_t.is_complex() and y.is_complex()):
            raise TypeError("x_t and y must be complex spectrograms [B, 1, F, T]")
        if x_t.shape != y.shape or x_t.dim() != 4 or x_t.shape[1] != 1:
            raise ValueError(f"x_t and y must both be [B, 1, F, T], got {tuple(x_t.shape)} and {tuple(y.shape)}")
        _, _, freqs, frames = x_t.shape
        if freqs != self.image_size:
            raise ValueError(f"input has {freqs} frequency bins but the backbone was built for "
                             f"image_size={self.image_size}; set backbone.image_size to n_fft // 2 + 1")
        if frames % self.time_multiple:
            raise ValueError(f"{frames} frames is not a multiple of {self.time_multiple}; pad the time axis "
                             f"(sgmse_nc.spec.pad_frames(spec, backbone.time_multiple))")
        t = torch.as_tensor(t, dtype=x_t.real.dtype, device=x_t.device).reshape(-1)
        if t.numel() == 1:
            t = t.expand(x_t.shape[0])
        if t.numel() != x_t.shape[0]:
            raise ValueError(f"t must hold one time per example ({x_t.shape[0]}), got shape {tuple(t.shape)}")
        return t


def _cross_attention_levels(resolutions: list[int], xattn_resolutions: tuple, token_dim: int) -> frozenset:
    levels = frozenset(i for i, res in enumerate(resolutions) if res in xattn_resolutions)
    unknown = sorted(set(xattn_resolutions) - set(resolutions))
    if unknown:
        raise ValueError(f"xattn_resolutions {unknown} are not frequency resolutions of this backbone "
                         f"({resolutions})")
    if token_dim and not levels:
        raise ValueError(f"the encoder emits tokens (token_dim={token_dim}) but backbone.xattn_resolutions is "
                         f"empty; set it to resolutions among {resolutions} (e.g. [{resolutions[-2]}])")
    if levels and not token_dim:
        raise ValueError("backbone.xattn_resolutions is set but the encoder emits no tokens; choose a token "
                         "encoder (encoder=sequence, or clap/panns with tokens: true) or set xattn_resolutions: []")
    return levels


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = ["NCSNpp", "count_parameters", "IN_CHANNELS"]
