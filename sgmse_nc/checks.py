"""One input check for every tool: read each file's header (and, for float files, its samples) before any
real work, and collect every problem, each with the file and the fix, so one run reports them all.

    ok, problems = check_audio_files(paths, Requirements(rate_fix="pass --resample"))
    if problems:
        raise UserError(problems_message(problems, len(paths), "nothing was enhanced", "or pass --skip-bad"))

Integer PCM cannot hold NaN/Inf, so only float files are read in full (in blocks: memory stays flat).
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from sgmse_nc.spec import DEFAULT_SAMPLE_RATE


FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")
UNREADABLE_FIX = "Replace or remove the file(s)."
NOT_FINITE_FIX = "Replace the file(s), or remove them."


@dataclass(frozen=True)
class Header:
    """What the tools need to know about a usable file (frames at the file's own rate)."""
    path: Path
    frames: int
    sample_rate: int
    channels: int

    def samples_at(self, rate: int) -> int:
        """Length after resampling to `rate` (torchaudio's resample gives ceil(frames * rate / own rate))."""
        return self.frames if rate == self.sample_rate else math.ceil(self.frames * rate / self.sample_rate)


@dataclass(frozen=True)
class Problem:
    path: Path
    what: str  # without the path, so that files with the same problem are listed together
    fix: str

    def __str__(self) -> str:
        return f"{self.path}: {self.what}. {self.fix}"


@dataclass(frozen=True)
class Requirements:
    """What a tool accepts. `rate_fix` / `channels_fix` tell the user how to get there with that tool."""
    sample_rate: int | None = DEFAULT_SAMPLE_RATE  # None: any rate (the tool resamples to working_rate)
    rate_fix: str = f"Resample to {DEFAULT_SAMPLE_RATE} Hz, e.g. `sox in.wav -r {DEFAULT_SAMPLE_RATE} out.wav`."
    mono: bool = True  # False: any channel count (the tool down-mixes or splits)
    channels_fix: str = "Convert to mono, e.g. `sox in.wav -c 1 out.wav`."
    min_samples: int = 1  # at the tool's working rate (sample_rate, or working_rate when any rate is taken)
    short_fix: str = "Remove the file(s) or use longer recordings."
    check_finite: bool = True
    working_rate: int = DEFAULT_SAMPLE_RATE  # the rate a tool that takes any rate resamples to


def inspect(path, req: Requirements = Requirements()) -> Header | Problem:
    """The header of `path`, or the first problem that makes it unusable under `req`."""
    path = Path(path)
    if not path.is_file():
        return Problem(path, "file not found", "Check the path.")
    try:
        info = sf.info(str(path))
    except Exception as err:  # soundfile raises several types for corrupt files
        reason = str(err).rsplit(": ", 1)[-1].strip(". ") or type(err).__name__
        return Problem(path, f"cannot be read as audio ({reason})", UNREADABLE_FIX)
    header = Header(path, int(info.frames), int(info.samplerate), int(info.channels))
    if header.frames == 0:
        return Problem(path, "holds no samples", UNREADABLE_FIX)
    if req.sample_rate is not None and header.sample_rate != req.sample_rate:
        return Problem(path, f"sample rate {header.sample_rate} Hz, {req.sample_rate} Hz is needed", req.rate_fix)
    if req.mono and header.channels > 1:
        return Problem(path, f"has {header.channels} channels, mono is needed", req.channels_fix)
    rate = req.sample_rate or req.working_rate
    if header.samples_at(rate) < req.min_samples:
        return Problem(path, f"{header.samples_at(rate)} samples at {rate} Hz, at least {req.min_samples} are "
                             f"needed", req.short_fix)
    if req.check_finite and info.subtype in FLOAT_SUBTYPES and not _all_finite(path):
        return Problem(path, "contains NaN or Inf samples", NOT_FINITE_FIX)
    return header


def _all_finite(path: Path, block: int = 1 << 18) -> bool:
    try:
        return all(np.isfinite(b).all() for b in sf.blocks(str(path), blocksize=block, dtype="float32"))
    except Exception:  # a header that reads but samples that do not
        return False


def check_audio_files(paths, req: Requirements = Requirements(), workers: int | None = None
                      ) -> tuple[dict[Path, Header], list[Problem]]:
    """Inspect every file (headers in a thread pool: soundfile releases the GIL). Returns the usable files'
    headers by path and the problems in the order of `paths`."""
    paths = [Path(p) for p in paths]
    workers = workers or min(16, (os.cpu_count() or 1) * 4)
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(lambda p: inspect(p, req), paths))
    headers = {r.path: r for r in results if isinstance(r, Header)}
    return headers, [r for r in results if isinstance(r, Problem)]


def problems_message(problems: list[Problem], total: int, consequence: str, alternative: str = "") -> str:
    """One message naming every problem file, grouped by problem and fix, e.g.

    "3 of 10 input file(s) cannot be used, nothing was enhanced: sample rate 48000 Hz, 16000 Hz is needed
    (a.wav, b.wav): pass --resample; contains NaN or Inf samples (c.wav): replace the file(s). Fix them, or
    pass --skip-bad to enhance the other 7."
    """
    groups: dict[tuple[str, str], list[str]] = {}
    for p in problems:
        groups.setdefault((p.what, p.fix), []).append(str(p.path))
    parts = [f"{what} ({', '.join(files)}): {fix.rstrip('.')}" for (what, fix), files in groups.items()]
    text = f"{len(problems)} of {total} input file(s) cannot be used, {consequence}: " + "; ".join(parts) + "."
    return text + (f" Fix them, {alternative}." if alternative else " Fix them and rerun.")
