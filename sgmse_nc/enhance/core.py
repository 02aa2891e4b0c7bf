"""Enhancement as a library: waveforms in, waveforms out; batching across files, chunking of long files.

Each file (or channel) is normalised by its own noisy peak (the SGMSE+ convention); its reference by the
same factor. References are encoded once per file, at the length the checkpoint was trained with (its
`ref_seconds`: training encodes a stretch that long drawn from the reference recording; here the centre
stretch, looped when the file is shorter, as training loops short recordings), unless the caller gives
another length; a checkpoint that does not record it gets the whole file; files longer than `chunk_seconds` are cut into
overlapping chunks that are enhanced as batch items (all with their file's condition) and overlap-added
back with linear cross-fades, so peak memory does not grow with the file length.

Reproducibility: every chunk draws its noise from its own generator, seeded from the seed and the file's
name (never its position in a to-do list), and is batched only with chunks of the same padded length. The
batches are planned over all inputs, whatever is already done, so a resumed run computes exactly what an
uninterrupted one does. (Another batch size gives the same noise; batched float kernels may then differ
in the last bits.)
"""
from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from sgmse_nc.condition import stack_conditions
from sgmse_nc.data.example import crop_start, loop_to_length
from sgmse_nc.errors import UserError
from sgmse_nc.spec import pad_to, peak_normalise

if TYPE_CHECKING:
    from sgmse_nc.diffusion.model import ScoreModel  # imported when a model is loaded: checks and errors stay fast

log = logging.getLogger(__name__)

DEFAULT_CHUNK_SECONDS = 20.0  # longer files are enhanced in chunks (0: whole files, memory grows with length)
MIN_CHUNK_SECONDS = 0.5  # the STFT needs n_fft samples and the U-Net 64-frame blocks (0.51 s): shorter is padding
OVERLAP_SECONDS = 0.5
MIN_REF_SECONDS = 0.1  # a reference cut from the pauses: several STFT windows at any rate (n_fft is 32 ms)
MIN_INPUT_SAMPLES = 510  # one STFT window (n_fft) at 16 kHz; a model with a longer window needs its n_fft
SILENT_REFERENCE_RMS = 1e-4  # -80 dBFS: a reference this quiet describes no noise
CHANNEL_MODES = ("mix", "each")  # multi-channel input: down-mix to mono, or enhance each channel


# ------------------------------------------------------------------------------------------ options

def check_options(batch_size: int = 1, chunk_seconds: float = 0.0, guidance: float | None = None,
                  channels: str | None = None, sampler: dict | None = None) -> None:
    """Refuse option values that would run but give wrong or no output; the message names the option as
    `name=value` in backquotes (the enhance command turns that into its flag, e.g. --batch-size 0)."""
    sampler = sampler or {}
    N, snr, steps = sampler.get("N"), sampler.get("snr"), sampler.get("corrector_steps")

    def need(option, value, ok, what):
        if not ok:
            raise UserError(f"`{option}={value}`: must be {what}.")

    need("batch_size", batch_size, batch_size >= 1, "at least 1")
    need("chunk_seconds", chunk_seconds, math.isfinite(chunk_seconds) and
         (chunk_seconds == 0 or chunk_seconds >= MIN_CHUNK_SECONDS),
         f"0 (whole files) or at least {MIN_CHUNK_SECONDS} s (the STFT window and the network's 64-frame "
         f"blocks need that much)")
    need("guidance", guidance, guidance is None or math.isfinite(guidance), "a finite number")
    need("N", N, N is None or N >= 1, "at least 1 (reverse steps; 0 would return the prior sample)")
    need("snr", snr, snr is None or (math.isfinite(snr) and snr > 0), "a finite number above 0")
    need("corrector_steps", steps, steps is None or steps >= 0, "0 or more")
    need("channels", channels, channels is None or channels in CHANNEL_MODES, f"one of {CHANNEL_MODES}")


# ------------------------------------------------------------------------------------------ in memory

def chunk_bounds(length: int, chunk: int, overlap: int) -> list[tuple[int, int]]:
    """Windows of `chunk` samples with `overlap` samples shared between neighbours, covering [0, length)."""
    if chunk <= 0 or length <= chunk:
        return [(0, length)]
    hop = chunk - overlap
    starts = list(range(0, length - chunk, hop)) + [length - chunk]
    return [(s, s + chunk) for s in starts]


def overlap_add(pieces: list[torch.Tensor], bounds: list[tuple[int, int]], length: int, ramp: int) -> torch.Tensor:
    """Join chunks that cover [0, length): each is tapered linearly over `ramp` samples at its inner edges and
    the sum is divided by the summed tapers, so the result is exact wherever the chunks agree, however many
    overlap at a sample."""
    out, norm = torch.zeros(length), torch.zeros(length)
    for i, ((a, b), piece) in enumerate(zip(bounds, pieces)):
        w = torch.ones(b - a)
        r = min(ramp, (b - a) // 2)
        if r > 0:
            up = torch.linspace(0, 1, r + 2)[1:-1]
            if i > 0:
                w[:r] = up
            if i < len(bounds) - 1:
                w[-r:] = up.flip(0)
        out[a:b] += piece * w
        norm[a:b] += w
    return out / norm


def stream_seed(seed: int | None, name: str) -> int | None:
    """A file's (or channel's) seed from the run's seed and its name only: stable across runs and batching."""
    if seed is None:
        return None
    digest = hashlib.sha256(f"{seed}\0{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


@dataclass(frozen=True)
class Unit:
    """One batch item: samples [start, stop) of stream `stream`, padded to `frames` STFT frames."""
    stream: int
    start: int
    stop: int
    frames: int
    seed: int | None


def default_batch_size(device) -> int:
    """Chunks enhanced together when the user does not say: 1 on a CPU, where batching does not pay (a
    network evaluation costs more CPU time per item at batch 4 than at 1: 1.06-1.49x from 128 to 512 frames;
    bench/run.py --only folder, README), 4 on accelerators."""
    return 1 if torch.device(device).type == "cpu" else 4


@dataclass
class Plan:
    """The batches of a set of streams (mono waveforms), fixed by their lengths and seeds alone."""
    lengths: list[int]
    chunk: int
    overlap: int
    batches: list[list[Unit]] = field(default_factory=list)

    @classmethod
    def make(cls, lengths: list[int], seeds: list[int | None], chunk: int, overlap: int, batch_size: int,
             hop: int, multiple: int) -> "Plan":
        by_frames: dict[int, list[Unit]] = {}
        for s, n in enumerate(lengths):
            for a, b in chunk_bounds(n, chunk, overlap):
                frames = -(-((b - a) // hop + 1) // multiple) * multiple
                seed = None if seeds[s] is None else stream_seed(seeds[s], str(a))
                by_frames.setdefault(frames, []).append(Unit(s, a, b, frames, seed))
        plan = cls(lengths, chunk, overlap)
        for frames in sorted(by_frames):  # equal padding within a batch: an item never depends on its mates
            units = by_frames[frames]
            plan.batches += [units[i:i + batch_size] for i in range(0, len(units), batch_size)]
        return plan

    def units_of(self, stream: int) -> int:
        return len(chunk_bounds(self.lengths[stream], self.chunk, self.overlap))

    def join(self, stream: int, pieces: dict[int, torch.Tensor]) -> torch.Tensor:
        bounds = chunk_bounds(self.lengths[stream], self.chunk, self.overlap)
        return overlap_add([pieces[a] for a, _ in bounds], bounds, self.lengths[stream], self.overlap)


def chunk_samples(chunk_seconds: float, sample_rate: int, overlap_seconds: float) -> tuple[int, int]:
    chunk = int(chunk_seconds * sample_rate)
    return chunk, (min(int(overlap_seconds * sample_rate), chunk // 2) if chunk else 0)


@dataclass
class Stream:
    """One mono waveform being enhanced: its samples, its peak (the network sees wav / norm, the SGMSE+
    convention), its encoded condition (None: the null condition) and its enhanced chunks by start sample."""
    wav: torch.Tensor
    norm: torch.Tensor
    cond: object = None
    pieces: dict[int, torch.Tensor] = field(default_factory=dict)

    @classmethod
    def prepare(cls, model: ScoreModel, wav: torch.Tensor, reference: torch.Tensor | None) -> "Stream":
        """Normalise by the noisy peak and encode the reference (once per stream, never per sampler step)."""
        norm = peak_normalise(wav)[1]
        return cls(wav, norm, encode_reference(model, reference, norm))


def reference_samples(model: ScoreModel, seconds: float | None = None) -> int | None:
    """How many samples of each reference are encoded: `seconds` when given, else the checkpoint's ref_seconds
    (what training encoded), as training counts them (at least one STFT window); None: the whole file (a
    checkpoint that does not record its reference length)."""
    seconds = getattr(model, "ref_seconds", None) if seconds is None else seconds
    if seconds is None:
        return None
    return max(int(round(float(seconds) * model.sample_rate)), model.spec.n_fft)


def describe_reference_length(model_seconds: float | None, seconds: float | None = None) -> str:
    """The reference length enhancement uses, in words (logs, settings records, the report's header)."""
    if seconds is not None:
        return f"the centre {seconds:g} s of each reference file (set by the user; the checkpoint's ref_seconds is " \
               f"{'not recorded' if model_seconds is None else f'{model_seconds:g} s'})"
    if model_seconds is None:
        return "each whole reference file (the checkpoint records no ref_seconds)"
    return f"the centre {model_seconds:g} s of each reference file (the checkpoint's ref_seconds, as trained)"


def reference_stretch(reference: torch.Tensor, length: int | None) -> torch.Tensor:
    """The centre `length` samples of a reference [T] (looped when shorter); None: the whole reference."""
    if length is None:
        return reference
    start = crop_start(reference.shape[-1], length, None)  # None: the centred start
    return loop_to_length(reference[..., start:start + length], length)


def encode_reference(model: ScoreModel, reference: torch.Tensor | None, norm: torch.Tensor):
    """The condition of one file (a batch of one), or None (no reference: the null condition)."""
    if reference is None or not model.conditional:
        return None
    r_wav = (reference / norm).to(model.device)[None]
    return model.encode(model.spec.to_spec(r_wav).unsqueeze(1), r_wav)


def enhance_batch(model: ScoreModel, units: list[Unit], streams: list[Stream], guidance_scale: float | None,
                  sampler_overrides: dict) -> list[torch.Tensor]:
    """The batch step of every enhancement: enhance one planned batch (streams[i] is the stream of units[i])
    and return each unit's enhanced samples at its stream's level, on the CPU."""
    spec, device = model.spec, model.device
    ys, frames = [], []
    for u, stream in zip(units, streams):
        y = spec.to_spec((stream.wav[u.start:u.stop] / stream.norm).to(device))
        # Zero-padding frames go before the inverse STFT (their estimate is not of the signal: it skews the
        # window envelope at the end); reflected frames stay, as sp-uhh/sgmse's enhancement.py keeps them.
        frames.append(u.frames if model.pad_mode == "reflection" else y.shape[-1])
        ys.append(pad_to(y, u.frames, model.pad_mode))
    generators = None
    if all(u.seed is not None for u in units):
        generators = [torch.Generator(device=device).manual_seed(u.seed) for u in units]
    x_hat = model.enhance_spec(torch.stack(ys).unsqueeze(1), stack_conditions([s.cond for s in streams]),
                               guidance_scale=guidance_scale, generator=generators, **sampler_overrides)
    return [spec.to_wav(x[0, :, :n], length=u.stop - u.start).cpu() * stream.norm
            for u, x, n, stream in zip(units, x_hat, frames, streams)]


@torch.no_grad()
def enhance(model: ScoreModel, noisy: list[torch.Tensor], references: list[torch.Tensor | None] | None = None,
            batch_size: int | None = None, chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
            overlap_seconds: float = OVERLAP_SECONDS, sample_rate: int | None = None,
            guidance_scale: float | None = None, seed: int | None = 0, names: list[str] | None = None,
            ref_seconds: float | None = None, **sampler_overrides) -> list[torch.Tensor]:
    """Enhance mono waveforms [T_i] at the model's rate (`model.sample_rate`; sample_rate, when given, must be
    it); returns waveforms of the same lengths, on the CPU.

    references: per file a noise-only waveform or None (null condition → unconditional score).
    chunk_seconds > 0 cuts longer files into chunks (bounded memory on long recordings); 0: whole files.
    names: what seeds each file's randomness together with `seed` (default: its index).
    ref_seconds: the reference length encoded (the centre stretch); None: the checkpoint's (reference_samples).
    """
    if sample_rate is not None and sample_rate != model.sample_rate:
        raise UserError(f"the waveforms are at {sample_rate} Hz but the model works at {model.sample_rate} Hz; "
                        f"resample them (sgmse_nc.audio.resample_audio) first")
    sample_rate = model.sample_rate
    references = references or [None] * len(noisy)
    batch_size = default_batch_size(model.device) if batch_size is None else batch_size
    names = names or [str(i) for i in range(len(noisy))]
    length = reference_samples(model, ref_seconds)
    references = [None if r is None else reference_stretch(r, length) for r in references]
    streams = [Stream.prepare(model, w, r) for w, r in zip(noisy, references)]
    chunk, overlap = chunk_samples(chunk_seconds, sample_rate, overlap_seconds)
    plan = Plan.make([w.numel() for w in noisy], [stream_seed(seed, n) for n in names], chunk, overlap,
                     batch_size, model.spec.hop_length, model.time_multiple)
    for batch in plan.batches:
        mine = [streams[u.stream] for u in batch]
        for u, piece in zip(batch, enhance_batch(model, batch, mine, guidance_scale, sampler_overrides)):
            streams[u.stream].pieces[u.start] = piece
    return [plan.join(s, stream.pieces) for s, stream in enumerate(streams)]
