"""Activity detection: which samples of a recording are active (frame energy within `threshold_db` of the
loudest frame and above an absolute floor), the span from the first to the last active sample, and levels
measured over the active part only (mostly silent clips such as ESC-50's would otherwise read far too quiet).
Mixers measure the SNR on the active samples; pools draw stretches inside the active span.
"""
from __future__ import annotations

import torch

from sgmse_nc.audio import SAMPLE_RATE

FRAME_SECONDS = 0.02
ACTIVE_THRESHOLD_DB = -40.0  # frames quieter than this relative to the loudest frame are "silence"
SILENCE_DBFS = -70.0  # and frames below this absolute level always are


def active_mask(wav: torch.Tensor, sample_rate: int = SAMPLE_RATE, threshold_db: float = ACTIVE_THRESHOLD_DB,
                frame_seconds: float = FRAME_SECONDS) -> torch.Tensor:
    """Boolean mask [T] of the samples in active frames (frame energy within `threshold_db` of the loudest).

    Frame based, so a click inside a frame marks the whole frame active; a last partial frame counts as a
    frame of its own.
    """
    frame = max(1, int(round(frame_seconds * sample_rate)))
    n = wav.shape[-1]
    padded = torch.nn.functional.pad(wav, (0, (-n) % frame))
    energy_db = 10 * torch.log10(padded.reshape(-1, frame).pow(2).mean(-1) + 1e-20)
    floor = max(float(energy_db.max()) + threshold_db, SILENCE_DBFS)
    return (energy_db > floor).repeat_interleave(frame)[:n]


def active_span(wav: torch.Tensor, sample_rate: int = SAMPLE_RATE,
                threshold_db: float = ACTIVE_THRESHOLD_DB) -> tuple[int, int]:
    """(start, stop) from the first to the last active sample; (0, 0) for a silent signal."""
    idx = torch.nonzero(active_mask(wav, sample_rate, threshold_db)).flatten()
    if idx.numel() == 0:
        return 0, 0
    return int(idx[0]), int(idx[-1]) + 1


def match_active_rms(reference: torch.Tensor, target: torch.Tensor, sample_rate: int = SAMPLE_RATE,
                     threshold_db: float = ACTIVE_THRESHOLD_DB) -> torch.Tensor:
    """Scale `reference` so its active RMS equals that of `target` (clips of a class have arbitrary levels)."""
    def active_rms(x):
        mask = active_mask(x, sample_rate, threshold_db)
        return x[mask].pow(2).mean().sqrt() if mask.any() else x.pow(2).mean().sqrt()
    return reference * (active_rms(target) / active_rms(reference).clamp_min(1e-8))
