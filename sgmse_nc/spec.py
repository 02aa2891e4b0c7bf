"""SGMSE+ spectrogram: complex STFT <-> compressed spectrogram β·|X|^α·e^{i∠X}, and padding rules.

Conventions (sp-uhh/sgmse): 16 kHz, n_fft 510 (256 bins), hop 128, periodic Hann, centred STFT,
α = 0.5, β = 0.15, waveforms normalised by the noisy signal's peak before the transform.
`decibels` is the log magnitude the pictures of spectrograms show (training logs, the report).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Spectrogram:
    n_fft: int = 510
    hop_length: int = 128
    alpha: float = 0.5
    beta: float = 0.15

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


def _real_dtype(t: torch.Tensor) -> torch.dtype:
    return t.real.dtype if t.is_complex() else t.dtype


def decibels(spec: torch.Tensor, floor: float = 1e-8) -> torch.Tensor:
    """20·log10 of a complex spectrogram's magnitude (clamped at `floor`: silence gives a finite value)."""
    return 20 * torch.log10(spec.abs().float().clamp_min(floor))


def peak_normalise(noisy: torch.Tensor, eps: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
    """Divide by the noisy signal's peak (per item along the last axis); return (normalised, factor)."""
    factor = noisy.abs().amax(dim=-1, keepdim=True).clamp_min(eps)
    return noisy / factor, factor


def pad_frames(spec: torch.Tensor, multiple: int = 64) -> torch.Tensor:
    """Zero-pad the time axis to a multiple of `multiple` frames (the NCSN++ U-Net needs it)."""
    frames = spec.shape[-1]
    extra = (-frames) % multiple
    return torch.nn.functional.pad(spec, (0, extra)) if extra else spec
