"""Levels: mixing speech and noise at an SNR, and the peak every written or batched signal stays below.

Used by the dynamic-mixing dataset, the test-set builders and the demo corpus alike.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from sgmse_nc.audio import SAMPLE_RATE, scale_noise_to_snr
from sgmse_nc.data.activity import ACTIVE_THRESHOLD_DB, active_mask

PEAK_LIMIT = 0.99  # mixtures are scaled down as a whole so no peak exceeds this (no clipping, SNR unchanged)
SILENT_RMS = 1e-5  # -100 dBFS: a speech crop this quiet cannot set a noise level


@dataclass
class Mixture:
    clean: torch.Tensor
    noisy: torch.Tensor
    noise: torch.Tensor  # the noise as mixed (noisy − clean)
    reference: torch.Tensor
    achieved_snr: float  # speech power / active noise power, in dB, after level handling
    scale: float  # the factor everything was scaled down by to avoid clipping (1: none)


def mix_at_snr(clean: torch.Tensor, noise: torch.Tensor, reference: torch.Tensor, snr_db: float,
               sample_rate: int = SAMPLE_RATE, active_only: bool = True,
               threshold_db: float = ACTIVE_THRESHOLD_DB, peak: float = PEAK_LIMIT) -> Mixture:
    """clean + noise at `snr_db`; the reference gets the noise's gain. If the noisy signal or the reference
    would peak above `peak`, all of them are scaled down together."""
    mask = active_mask(noise, sample_rate, threshold_db) if active_only else None
    if mask is not None and not mask.any():
        mask = None
    scaled = scale_noise_to_snr(clean, noise, snr_db, mask)
    gain = scaled.norm() / noise.norm().clamp_min(1e-12)
    reference = reference * gain
    noisy = clean + scaled
    top = float(max(noisy.abs().max(), reference.abs().max()))
    scale = min(1.0, peak / top) if top > 0 else 1.0
    clean, scaled, noisy, reference = clean * scale, scaled * scale, noisy * scale, reference * scale
    measured = scaled if mask is None else scaled[mask]
    achieved = 10 * torch.log10(clean.pow(2).mean().clamp_min(1e-20) / measured.pow(2).mean().clamp_min(1e-20))
    return Mixture(clean, noisy, scaled, reference, float(achieved), scale)
