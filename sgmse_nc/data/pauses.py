"""Noise references from the pauses of a noisy recording (the `from_noisy_pauses` strategy).

A frame is a pause when the voice-activity detector finds no speech in it AND its energy is close to the
recording's noise floor (the quietest frames). The detector is WebRTC's (package `webrtcvad-wheels`, the
model is compiled into it: nothing is downloaded); without the package, or where the detector hears speech
in every quiet frame (it does in strong noise), the energy rule alone decides.
Pause runs are shrunk by a margin at both ends (speech onsets and decays stay out), and the reference is
the pauses joined end to end, looped when they are shorter than asked but hold at least `min_seconds`.

    from sgmse_nc.data.pauses import reference_from_noisy_pauses
    reference = reference_from_noisy_pauses(noisy_wav, 16000, seconds=1.0)   # enhance.py --ref-strategy
"""
from __future__ import annotations

import numpy as np
import torch

from sgmse_nc.audio import AudioError
from sgmse_nc.data.example import loop_to_length

FRAME_SECONDS = 0.02  # webrtcvad takes 10, 20 or 30 ms frames
SMOOTH_FRAMES = 5
FLOOR_PERCENTILE = 10.0  # the noise floor: this percentile of the frame energies
FLOOR_MARGIN_DB = 3.0  # frames louder than the floor by more than this are not pauses
MARGIN_SECONDS = 0.04  # taken off both ends of every pause run
VAD_AGGRESSIVENESS = 2  # webrtcvad 0 (lenient) .. 3 (strict about what is speech)
VAD_RATES = (8000, 16000, 32000, 48000)


class NoPauseError(AudioError):
    """The recording has no pause long enough for a noise reference."""


def _vad_speech(frames: np.ndarray, sample_rate: int) -> np.ndarray | None:
    """Per-frame speech decisions of webrtcvad, or None when it is not installed or the rate is unsupported."""
    try:
        import webrtcvad
    except ImportError:
        return None
    if sample_rate not in VAD_RATES:
        return None
    vad = webrtcvad.Vad(VAD_AGGRESSIVENESS)
    pcm = (np.clip(frames, -1.0, 1.0) * 32767).astype("<i2")
    return np.array([vad.is_speech(frame.tobytes(), sample_rate) for frame in pcm])


def pause_runs(wav, sample_rate: int, min_seconds: float = 0.1, vad: bool = True) -> list[tuple[int, int]]:
    """(start, stop) sample ranges of the pauses of `wav`, each at least `min_seconds` after the margins.
    vad: also require the voice-activity detector to find no speech (when it is installed)."""
    x = wav.detach().cpu().numpy() if isinstance(wav, torch.Tensor) else np.asarray(wav)
    x = x.astype(np.float64).reshape(-1)
    frame = int(round(FRAME_SECONDS * sample_rate))
    count = x.size // frame
    if count == 0:
        return []
    frames = x[:count * frame].reshape(count, frame)
    peak = max(float(np.abs(x).max()), 1e-12)
    energy = np.mean(frames ** 2, axis=1)
    # Smoothed over SMOOTH_FRAMES (the energy of one noise frame scatters by several dB).
    smooth = np.convolve(energy, np.ones(SMOOTH_FRAMES) / SMOOTH_FRAMES, mode="same")
    energy_db = 10 * np.log10(np.maximum(smooth, energy) + 1e-20)
    quiet = energy_db <= np.percentile(energy_db, FLOOR_PERCENTILE) + FLOOR_MARGIN_DB
    speech = _vad_speech(frames / peak * 0.5, sample_rate) if vad else None  # level-normalised input
    pause = quiet if speech is None else quiet & ~speech
    margin = int(round(MARGIN_SECONDS * sample_rate))
    runs, k = [], 0
    while k < count:
        if not pause[k]:
            k += 1
            continue
        j = k
        while j < count and pause[j]:
            j += 1
        start, stop = k * frame + margin, j * frame - margin
        if stop - start >= min_seconds * sample_rate:
            runs.append((start, stop))
        k = j
    return runs


def noisy_pause_stretches(noisy, sample_rate: int, ref_len: int, min_seconds: float = 0.1):
    """The pauses of `noisy` joined into one `ref_len` reference, as (stretch, first pause start); nothing
    when the pauses hold less than `min_seconds` in all."""
    shortest = min(min_seconds, ref_len / sample_rate)
    runs = pause_runs(noisy, sample_rate, shortest)
    if sum(b - a for a, b in runs) < min_seconds * sample_rate:  # the VAD hears speech in every quiet frame
        runs = pause_runs(noisy, sample_rate, shortest, vad=False)  # (it does in strong noise): energy alone
    if sum(b - a for a, b in runs) < min_seconds * sample_rate:
        return
    noisy = torch.as_tensor(noisy).reshape(-1)
    joined = torch.cat([noisy[a:b] for a, b in runs])
    yield loop_to_length(joined, ref_len), runs[0][0]


def reference_from_noisy_pauses(wav, sample_rate: int, seconds: float, min_seconds: float = 0.1) -> torch.Tensor:
    """A `seconds` noise reference from the pauses of the noisy recording `wav` (NoPauseError if none)."""
    ref_len = max(1, int(round(seconds * sample_rate)))
    for stretch, _ in noisy_pause_stretches(wav, sample_rate, ref_len, min_seconds):
        return stretch
    raise NoPauseError(f"no pause of at least {min_seconds:g} s without speech was found (the voice-activity "
                       f"detector hears speech, or the level never drops to the noise floor). Give a noise-only "
                       f"reference file instead (`ref_dir`), or `ref_strategy='none'`.")
