"""Wav IO (soundfile), resampling (torchaudio) and level helpers.

Every reading error names the file and the fix: the datasets, enhance.py and evaluate.py all read
through `read_audio`, so bad input is reported the same way everywhere.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from sgmse_nc.errors import UserError
from sgmse_nc.io import atomic_path

SAMPLE_RATE = 16000  # the default rate (SGMSE+'s); a model and a data config carry their own (spec.sample_rate)
AUDIO_EXTENSIONS = (".wav", ".flac")


class AudioError(UserError, ValueError):
    """A user-facing problem with an audio file; the message names the file and the fix."""


def read_audio(path, sample_rate: int | None = SAMPLE_RATE, resample: bool = False,
               mono: str = "error", min_samples: int = 1) -> torch.Tensor:
    """Read a mono file as a float32 tensor [T].

    sample_rate: the rate the caller needs (None: keep the file's). A file at another rate is
        resampled when `resample` is True, else refused with a message naming the fix.
    mono: "error" refuses multi-channel files, "mean" averages the channels, "first" keeps channel 0,
        "all" keeps every channel and returns [channels, T].
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: file not found. Check the folder in your config or command line.")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises several types for corrupt files
        raise AudioError(f"{path}: cannot be read as audio ({err}). Replace or remove the file.") from err
    if data.shape[1] > 1:
        if mono == "mean":
            data = data.mean(axis=1, keepdims=True)
        elif mono == "first":
            data = data[:, :1]
        elif mono != "all":
            raise AudioError(f"{path}: has {data.shape[1]} channels, mono is expected. "
                             f"Convert it, e.g. `sox in.wav -c 1 out.wav`.")
    wav = torch.from_numpy(np.ascontiguousarray(data.T))
    if sample_rate is not None and sr != sample_rate:
        if not resample:
            raise AudioError(f"{path}: sample rate {sr} Hz, {sample_rate} Hz is expected. Resample it "
                             f"(e.g. `sox in.wav -r {sample_rate} out.wav`).")
        wav = resample_audio(wav, sr, sample_rate)
    if wav.shape[-1] < min_samples:
        raise AudioError(f"{path}: {wav.shape[-1]} samples, at least {min_samples} are needed. "
                         f"Remove the file or use a longer recording.")
    if not torch.isfinite(wav).all():
        raise AudioError(f"{path}: contains NaN or Inf samples. Replace the file.")
    return wav if mono == "all" else wav[0]


def audio_info(path) -> sf._SoundFileInfo:
    """Header of an audio file without reading its samples (AudioError when unreadable)."""
    try:
        return sf.info(str(path))
    except Exception as err:
        raise AudioError(f"{path}: cannot be read as audio ({err}). Replace or remove the file.") from err


def write_audio(path, wav, sample_rate: int = SAMPLE_RATE, subtype: str = "PCM_16") -> Path:
    """Write atomically (temporary file, then rename) so an interrupted run never leaves half a file."""
    path = Path(path)
    if isinstance(wav, torch.Tensor):
        wav = wav.detach().cpu().float().numpy()
    wav = np.asarray(wav, dtype=np.float32)
    wav = wav.reshape(-1) if wav.ndim < 2 or wav.shape[0] == 1 else wav.T  # [channels, T] -> soundfile's [T, C]
    if subtype.startswith("PCM"):
        wav = np.clip(wav, -1.0, 1.0)
    with atomic_path(path) as tmp:
        sf.write(tmp, wav, sample_rate, subtype=subtype, format=path.suffix.lstrip(".").upper() or "WAV")
    return path


def resample_audio(wav: torch.Tensor, orig_sr: int, new_sr: int) -> torch.Tensor:
    if orig_sr == new_sr:
        return wav
    return AF.resample(wav, orig_sr, new_sr)


def list_audio(folder, recursive: bool = True) -> list[Path]:
    """Sorted audio files under a folder; a missing folder is an error naming it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise AudioError(f"{folder}: folder not found. Check the path in your config or command line.")
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in folder.glob(pattern) if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())


def rms(x: torch.Tensor, dim: int = -1, eps: float = 1e-12) -> torch.Tensor:
    return x.pow(2).mean(dim=dim).add(eps).sqrt()


def snr_db(speech: torch.Tensor, noise: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    return 10 * torch.log10((speech.pow(2).sum(-1) + eps) / (noise.pow(2).sum(-1) + eps))


def scale_noise_to_snr(speech: torch.Tensor, noise: torch.Tensor, target_snr_db: float,
                       noise_power_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Scale `noise` so that speech power / noise power equals `target_snr_db`.

    noise_power_mask: optional boolean mask of the noise samples the power is measured on
    (e.g. only the active part of a mostly silent ESC-50 clip).
    """
    measured = noise if noise_power_mask is None else noise[noise_power_mask]
    p_speech = speech.pow(2).mean()
    p_noise = measured.pow(2).mean().clamp_min(1e-12)
    gain = torch.sqrt(p_speech / (p_noise * 10 ** (target_snr_db / 10)))
    return noise * gain
