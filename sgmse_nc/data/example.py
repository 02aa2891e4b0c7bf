"""One training/eval example: crop, noise-reference stretch, peak normalisation, spectrograms.

Every dataset (paired folders, dynamic mixing, test sets) ends in `make_example`, so the batch format
is defined once:

    x      clean compressed spectrogram     complex [1, F, frames]
    y      noisy compressed spectrogram     complex [1, F, frames]
    r      reference compressed spectrogram complex [1, F, ref_frames]
    r_wav  reference waveform               float   [ref_samples]
    norm   the noisy peak all three were divided by (float)

The datasets add `id` (str), what the reference policy reports (`ref_null`, ...: data.honesty) and
`noise_class` (str, "" when unknown): the class of the mixed noise, the target of the optional auxiliary
noise-class head (sgmse_nc.diffusion.noise_class), which maps it to an index (-1 = unknown).
"""
from __future__ import annotations

import numpy as np
import torch

from sgmse_nc.spec import Spectrogram, peak_normalise


def crop_start(length: int, crop: int, rng: np.random.Generator | None) -> int:
    """Random start (rng given) or the centred one (rng None, deterministic evaluation)."""
    if length <= crop:
        return 0
    return int(rng.integers(0, length - crop + 1)) if rng is not None else (length - crop) // 2


def fit_length(wav: torch.Tensor, length: int) -> torch.Tensor:
    """Zero-pad symmetrically (as SGMSE+ does) or truncate to `length` samples."""
    pad = length - wav.shape[-1]
    if pad <= 0:
        return wav[..., :length]
    return torch.nn.functional.pad(wav, (pad // 2, pad - pad // 2))


def loop_to_length(wav: torch.Tensor, length: int) -> torch.Tensor:
    """Repeat a short noise stretch until it is `length` samples long (keeps noise statistics, no silence)."""
    if wav.shape[-1] >= length:
        return wav[..., :length]
    reps = -(-length // max(wav.shape[-1], 1))
    return wav.repeat(reps)[..., :length]


def make_example(clean: torch.Tensor, noisy: torch.Tensor, reference: torch.Tensor, spec: Spectrogram,
                 eps: float = 1e-8) -> dict:
    """Peak-normalise all three waveforms by the noisy peak and turn them into SGMSE+ spectrograms."""
    noisy, norm = peak_normalise(noisy, eps)
    clean, reference = clean / norm, reference / norm
    return {
        "x": spec.to_spec(clean).unsqueeze(0),
        "y": spec.to_spec(noisy).unsqueeze(0),
        "r": spec.to_spec(reference).unsqueeze(0),
        "r_wav": reference,
        "norm": norm.squeeze(-1),
    }
