"""Enhancement from your own code: a NumPy array or torch tensor in, the same type, length and rate out.

    from sgmse_nc import Enhancer
    enhancer = Enhancer.from_checkpoint("outputs/demo/quickstart/checkpoints/last.ckpt", device="cpu")
    enhanced = enhancer.enhance(noisy, 44100, reference=noise_only)   # any rate: resampled to 16 kHz and back

`noisy` is one channel, a 1-D waveform [time] at any sample rate; `reference` (optional) a noise-only recording
of the same scene at the same rate (None: the null condition, i.e. the unconditional score). A multi-channel
recording is refused: enhance each channel (`[enhancer.enhance(c, rate) for c in x]`, sgmse-enhance's
`--channels each`) or a down-mix (`x.mean(0)`, `--channels mix`). The result keeps the input's array type,
dtype, device and length. Its randomness depends on `seed` and `name` only, as sgmse-enhance's on --seed and
the file's name: `enhance(x, rate, seed=0, name="a.wav")` gives what `sgmse-enhance --noisy DIR` writes for
DIR/a.wav (before the 16-bit file format rounds it). Bad input raises InputError (a UserError and a
ValueError) naming the argument and the fix.
"""
from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import numpy as np
import torch

from sgmse_nc.audio import SAMPLE_RATE, resample_audio, rms
from sgmse_nc.enhance.core import (DEFAULT_CHUNK_SECONDS, MIN_INPUT_SAMPLES, SILENT_REFERENCE_RMS, check_options,
                                   enhance, reference_samples, reference_stretch)
from sgmse_nc.errors import UserError

if TYPE_CHECKING:
    from sgmse_nc.diffusion.model import ScoreModel

log = logging.getLogger(__name__)


class InputError(UserError, ValueError):
    """A waveform or setting given to Enhancer.enhance that cannot be enhanced; the message names the fix."""


class Enhancer:
    """A trained model, ready to enhance waveforms (see the module docstring)."""

    def __init__(self, model: ScoreModel):
        self.model = model.eval()

    @classmethod
    def from_checkpoint(cls, ckpt, device: str = "cpu", use_ema: bool = True, encoder_weights=None) -> Enhancer:
        """Load a checkpoint written by training (EMA weights unless use_ema=False). encoder_weights: where the
        frozen CLAP/PANNs weight file lies now, when it has moved since training."""
        from sgmse_nc.enhance.folder import load_model

        return cls(load_model(ckpt, device, use_ema, encoder_weights))

    @property
    def sample_rate(self) -> int:
        """The rate the model works at; other rates are resampled to it and back."""
        return SAMPLE_RATE

    @property
    def conditional(self) -> bool:
        """Whether the model listens to a noise reference."""
        return self.model.conditional

    def enhance(self, noisy, sample_rate: int, reference=None, guidance: float | None = None,
                sampler: str | None = None, seed: int | None = 0, name: str = "0",
                chunk_seconds: float = DEFAULT_CHUNK_SECONDS, batch_size: int | None = None,
                ref_seconds: float | None = None, **settings):
        """The enhanced waveform: same array type, dtype, device, length and rate as `noisy`.

        guidance: the guidance scale w (None: the model's). sampler: another sampler than the checkpoint's
        (pc, ode, heun, dpm, sb_sde, sb); settings: its settings to change, as in conf/sampler/ (N=30,
        snr=0.5, ...). seed, name: what the randomness depends on (sgmse-enhance: --seed and the file's
        name). chunk_seconds, batch_size: as sgmse-enhance's --chunk-seconds and --batch-size. ref_seconds: the
        reference length encoded, the centre stretch of `reference` (None: the checkpoint's ref_seconds, the
        length training encoded; the whole reference for a checkpoint that does not record it).
        """
        check_rate(sample_rate)
        overrides = {"name": sampler, **settings}  # None: the checkpoint's
        try:
            check_options(1 if batch_size is None else batch_size, chunk_seconds, guidance, sampler=overrides)
        except UserError as err:
            raise InputError(str(err)) from None
        wav = resample_audio(as_waveform(noisy, "noisy", sample_rate, MIN_INPUT_SAMPLES,
                                         "Pass a longer recording."), sample_rate, SAMPLE_RATE)
        ref = None
        if reference is not None:
            ref = as_waveform(reference, "reference", sample_rate, self.model.spec.n_fft,
                              "Pass a longer noise-only recording, or reference=None (unconditional).")
            if ref_seconds is not None and not (isinstance(ref_seconds, (int, float)) and math.isfinite(ref_seconds)
                                                and ref_seconds > 0):
                raise InputError(f"`ref_seconds={ref_seconds}`: give a reference length in seconds above 0, or None "
                                 f"(the checkpoint's).")
            ref = reference_stretch(resample_audio(ref, sample_rate, SAMPLE_RATE),
                                    reference_samples(self.model, ref_seconds))
            if not self.model.conditional:
                log.warning("the model is unconditional: the reference is not used")
            elif rms(ref) < SILENT_REFERENCE_RMS:
                log.warning("the noise reference is silent (RMS below -80 dBFS): enhanced with the null condition, "
                            "i.e. unconditionally")
                ref = None
        self._check_sampler(overrides)
        out = enhance(self.model, [wav], [ref], batch_size=batch_size, chunk_seconds=chunk_seconds,
                      guidance_scale=guidance, seed=seed, names=[name], ref_seconds=ref_seconds, **overrides)[0]
        out = resample_audio(out, SAMPLE_RATE, sample_rate)
        length = len(noisy)
        out = torch.nn.functional.pad(out[:length], (0, max(0, length - out.numel())))  # exactly the input's length
        return like(out, noisy)

    def _check_sampler(self, overrides: dict) -> None:
        """Refuse an unknown sampler or option before any work (the sampler would only find it at its first step)."""
        from sgmse_nc.diffusion.sampling import check_sampler, sampler_settings

        try:
            check_sampler(self.model.sde, **sampler_settings(self.model.sampler_cfg, **overrides))
        except ValueError as err:
            raise InputError(str(err)) from None


def check_rate(sample_rate) -> None:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise InputError(f"`sample_rate={sample_rate!r}`: must be the waveform's rate in Hz, a whole number "
                         f"above 0 (e.g. 16000 or 44100).")


def as_waveform(array, what: str, sample_rate: int, min_samples: int, short_fix: str) -> torch.Tensor:
    """A finite, float, mono waveform of at least `min_samples` at the model's rate, as a float32 CPU tensor [T];
    InputError names `what` and the fix."""
    if isinstance(array, np.ndarray):
        kind, floating = str(array.dtype), np.issubdtype(array.dtype, np.floating)
    elif isinstance(array, torch.Tensor):
        kind, floating = str(array.dtype), array.dtype.is_floating_point
    else:
        raise InputError(f"`{what}` is a {type(array).__name__}: a NumPy array or torch tensor is expected, e.g. "
                         f"np.asarray({what}, dtype=np.float32).")
    if not floating:
        raise InputError(f"`{what}` has dtype {kind}: float samples in [-1, 1] are expected. Convert, e.g. "
                         f"{what}.astype(np.float32) / 32768 for 16-bit integers.")
    if array.ndim != 1:
        raise InputError(f"`{what}` has shape {tuple(array.shape)}: one channel, shape (time,), is expected. "
                         f"Enhance each channel on its own ([enhancer.enhance(c, rate) for c in x], channels "
                         f"first) or a down-mix (x.mean(axis=0)).")
    if math.ceil(len(array) * SAMPLE_RATE / sample_rate) < min_samples:  # its length once resampled
        raise InputError(f"`{what}` is too short: {len(array)} samples at {sample_rate} Hz, at least "
                         f"{min_samples / SAMPLE_RATE * 1000:g} ms are needed. {short_fix}")
    wav = torch.as_tensor(array).detach().to("cpu", torch.float32)
    if not torch.isfinite(wav).all():
        raise InputError(f"`{what}` contains NaN or Inf samples. Replace them (e.g. np.nan_to_num) or pass "
                         f"another recording.")
    return wav


def like(wav: torch.Tensor, template):
    """`wav` as the type, dtype and device of `template`."""
    if isinstance(template, torch.Tensor):
        return wav.to(device=template.device, dtype=template.dtype)
    return wav.numpy().astype(template.dtype, copy=False)


__all__ = ["Enhancer", "InputError"]
