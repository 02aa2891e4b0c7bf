"""SGMSE+ spectrogram: complex STFT <-> compressed spectrogram β·|X|^α·e^{i∠X}, and padding rules.

The sample rate belongs to the spectrogram settings (one setting shared by the data, the model and its
checkpoint, enhancement and evaluation). Conventions (sp-uhh/sgmse): periodic Hann, centred STFT, waveforms
normalised by the noisy signal's peak before the transform, and per rate (`RATE_DEFAULTS`, conf/spec/):

    16 kHz  n_fft 510 (256 bins), hop 128, α 0.5,   β 0.15    SGMSE+'s default
    24 kHz  n_fft 766 (384 bins), hop 192, α 0.5,   β 0.15    ours (no published SGMSE+ model at 24 kHz)
    48 kHz  n_fft 1534 (768 bins), hop 384, α 0.667, β 0.065  SGMSE+'s EARS-WHAM / EARS-Reverb models

Every rate keeps the 32 ms window and 8 ms hop, and a bin count divisible by 64 (the U-Net's six halvings).
`decibels` is the log magnitude the pictures of spectrograms show (training logs, the report).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from sgmse_nc.audio import SAMPLE_RATE


DEFAULT_SAMPLE_RATE = SAMPLE_RATE  # 16 kHz: what checkpoints and configs that name no rate were made at
RATE_DEFAULTS = {  # sample rate -> STFT and compression settings (see the module docstring)
    16000: {"n_fft": 510, "hop_length": 128, "alpha": 0.5, "beta": 0.15},
    24000: {"n_fft": 766, "hop_length": 192, "alpha": 0.5, "beta": 0.15},
    48000: {"n_fft": 1534, "hop_length": 384, "alpha": 0.667, "beta": 0.065},
}


@dataclass(frozen=True)
class Spectrogram:
    n_fft: int = 510
    hop_length: int = 128
    alpha: float = 0.5
    beta: float = 0.15
    sample_rate: int = DEFAULT_SAMPLE_RATE

    @classmethod
    def for_rate(cls, sample_rate: int) -> "Spectrogram":
        """The SGMSE+ settings of a rate (RATE_DEFAULTS); another rate is refused with the ones we have."""
        if sample_rate not in RATE_DEFAULTS:
            raise ValueError(f"no spectrogram defaults for {sample_rate} Hz; choose one of "
                             f"{sorted(RATE_DEFAULTS)} (conf/spec/) or set spec.n_fft / hop_length yourself")
        return cls(**RATE_DEFAULTS[sample_rate], sample_rate=sample_rate)

    @classmethod
    def from_config(cls, node: dict | None) -> "Spectrogram":
        """From a config node or a checkpoint's hyper-parameters (no sample_rate: made at 16 kHz)."""
        return cls(**{k: v for k, v in (node or {}).items() if k != "_target_"})

    @property
    def num_bins(self) -> int:
        return self.n_fft // 2 + 1

    def window(self, ref: torch.Tensor) -> torch.Tensor:
        return torch.hann_window(self.n_fft, periodic=True, device=ref.device, dtype=_real_dtype(ref))

    def num_samples(self, num_frames: int) -> int:
        """Waveform length whose centred STFT has exactly `num_frames` frames."""
        return (num_frames - 1) * self.hop_length

    def stft(self, wav: torch.Tensor) -> torch.Tensor:
        """[..., T] real -> [..., F, frames] complex."""
        lead = wav.shape[:-1]
        spec = torch.stft(wav.reshape(-1, wav.shape[-1]), self.n_fft, self.hop_length, window=self.window(wav),
                          center=True, return_complex=True)
        return spec.reshape(*lead, *spec.shape[-2:])

    def istft(self, spec: torch.Tensor, length: int | None = None) -> torch.Tensor:
        lead = spec.shape[:-2]
        wav = torch.istft(spec.reshape(-1, *spec.shape[-2:]), self.n_fft, self.hop_length,
                          window=self.window(spec), center=True, length=length)
        return wav.reshape(*lead, wav.shape[-1])

    def compress(self, spec: torch.Tensor) -> torch.Tensor:
        if self.alpha != 1:
            spec = spec.abs().pow(self.alpha) * torch.exp(1j * spec.angle())
        return spec * self.beta

    def decompress(self, spec: torch.Tensor) -> torch.Tensor:
        spec = spec / self.beta
        if self.alpha != 1:
            spec = spec.abs().pow(1 / self.alpha) * torch.exp(1j * spec.angle())
        return spec

    def to_spec(self, wav: torch.Tensor) -> torch.Tensor:
        """Waveform [..., T] -> compressed spectrogram [..., F, frames]."""
        return self.compress(self.stft(wav))

    def to_wav(self, spec: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """Compressed spectrogram -> waveform (exact inverse of `to_spec` up to float precision)."""
        return self.istft(self.decompress(spec), length=length)


def dataset_rate(spec: Spectrogram, sample_rate: int | None = None) -> int:
    """A dataset's rate: its spectrogram's, which a dataset node may repeat but not contradict."""
    if sample_rate is not None and sample_rate != spec.sample_rate:
        raise ValueError(f"the dataset's sample_rate {sample_rate} Hz differs from spec.sample_rate "
                         f"{spec.sample_rate} Hz; drop the dataset's sample_rate (it follows spec=16k/24k/48k)")
    return spec.sample_rate


def _real_dtype(t: torch.Tensor) -> torch.dtype:
    return t.real.dtype if t.is_complex() else t.dtype


def decibels(spec: torch.Tensor, floor: float = 1e-8) -> torch.Tensor:
    """20·log10 of a complex spectrogram's magnitude (clamped at `floor`: silence gives a finite value)."""
    return 20 * torch.log10(spec.abs().float().clamp_min(floor))


def peak_normalise(noisy: torch.Tensor, eps: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
    """Divide by the noisy signal's peak (per item along the last axis); return (normalised, factor)."""
    factor = noisy.abs().amax(dim=-1, keepdim=True).clamp_min(eps)
    return noisy / factor, factor


PAD_MODES = ("zeros", "reflection")  # sp-uhh/sgmse pads ncsnpp inputs with zeros, ncsnpp_v2 / ncsnpp_48k reflecting


def pad_frames(spec: torch.Tensor, multiple: int = 64, mode: str = "zeros") -> torch.Tensor:
    """Pad the time axis at its end to a multiple of `multiple` frames (the NCSN++ U-Net needs it)."""
    return pad_to(spec, spec.shape[-1] + (-spec.shape[-1]) % multiple, mode)


def pad_to(spec: torch.Tensor, frames: int, mode: str = "zeros") -> torch.Tensor:
    """Pad the time axis at its end to `frames` frames, with zeros or by reflection (the published ncsnpp_v2 /
    ncsnpp_48k models were run that way). Reflection of a input shorter than the padding reflects again what
    it has padded (where sp-uhh/sgmse's ReflectionPad2d refuses); otherwise it equals that pad."""
    if mode not in PAD_MODES:
        raise ValueError(f"pad mode {mode!r}: choose one of {PAD_MODES}")
    extra = frames - spec.shape[-1]
    if extra <= 0:
        return spec
    if mode == "zeros":
        return torch.nn.functional.pad(spec, (0, extra))
    if spec.is_complex():
        return torch.complex(pad_to(spec.real, frames, mode), pad_to(spec.imag, frames, mode))
    lead = spec.shape[:-1]
    out = spec.reshape(-1, 1, spec.shape[-1])
    while out.shape[-1] < frames:  # torch's reflect pads at most length - 1
        step = min(frames - out.shape[-1], out.shape[-1] - 1) if out.shape[-1] > 1 else 0
        out = torch.nn.functional.pad(out, (0, step), mode="reflect") if step else \
            torch.nn.functional.pad(out, (0, frames - out.shape[-1]), mode="replicate")
    return out.reshape(*lead, frames)
