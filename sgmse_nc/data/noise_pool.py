"""Audio pools: any folder tree of wavs (noise corpora such as DEMAND, ESC-50, WHAM!, or clean speech),
read in random stretches without loading whole files.

A pool scans its files once (headers only, `soundfile.info`), skips unreadable, empty and too-short files
(counted and reported once), and reads stretches with partial reads at the file's own rate, then
downmixes and resamples to the pool rate (corpora come at 44.1/48 kHz). Optional class labels come
from the first sub-folder or from a csv (e.g. ESC-50's `meta/esc50.csv`).

`trim_silence` is for mostly silent clips (ESC-50): stretches are drawn inside each file's active span
(sgmse_nc.data.activity). Noise pairs drawn from pools: sgmse_nc.data.noise_source.
"""
from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from sgmse_nc.audio import SAMPLE_RATE, AudioError, list_audio, resample_audio
from sgmse_nc.data.activity import ACTIVE_THRESHOLD_DB, active_span
from sgmse_nc.data.example import loop_to_length

log = logging.getLogger(__name__)


class _Filter:
    """Which classes and folds a pool keeps (include lists, then exclude lists; None keeps all)."""

    def __init__(self, classes, exclude_classes, folds, exclude_folds):
        text = lambda values: None if values is None else {str(v) for v in values}
        self.lists = {"classes": (text(classes), text(exclude_classes)), "folds": (text(folds), text(exclude_folds))}

    def keeps(self, label, fold) -> bool:
        for value, (include, exclude) in ((label, self.lists["classes"]), (fold, self.lists["folds"])):
            if (include is not None and value not in include) or (exclude and value in exclude):
                return False
        return True

    def check(self, seen: dict, pool: str) -> None:
        """A filter naming a class or fold the pool does not have is a typo: an error listing what exists."""
        for kind, (include, exclude) in self.lists.items():
            known = {str(v) for v in seen[kind] if v is not None}
            unknown = sorted(((include or set()) | (exclude or set())) - known)
            if unknown:
                raise AudioError(f"pool {pool}: no file of {kind} {', '.join(unknown)}; the pool has "
                                 f"{', '.join(sorted(known)) or 'none'}. Fix the pool's {kind} filter.")


@lru_cache(maxsize=200_000)
def _header(path: str, mtime_ns: int, size: int) -> tuple[int, int, int] | str:
    """(frames, sample rate, channels) or the reason the file is unusable; cached per file version."""
    try:
        info = sf.info(path)
    except Exception as err:  # soundfile raises several types for corrupt files
        return f"unreadable ({err})"
    if info.frames <= 0:
        return "empty"
    return info.frames, info.samplerate, info.channels


@dataclass(frozen=True)
class PoolFile:
    path: Path
    name: str  # path relative to the pool root: what manifests record
    frames: int  # at the file's own rate
    file_rate: int
    channels: int
    label: str | None


class AudioPool:
    """The usable audio files under `root` (or an explicit `files` list), read in stretches at `sample_rate`.

    labels: None, "subfolder" (the first folder under root names the class) or a csv path whose
        `file_column` holds file names (relative to root, or bare names) and `label_column` the class.
    min_seconds: shorter files are skipped (counted); noise shorter than a crop is looped instead.
    classes / exclude_classes: keep only these classes / drop these (names checked against the labels).
    folds / exclude_folds: the same by the csv's `fold_column` (ESC-50's folds 1-5).
    unlabelled: a file with no class (not in the csv, or not in a sub-folder) is an error naming it ("error",
        the default), or is skipped and counted in the pool's report ("skip").
    """

    def __init__(self, root, sample_rate: int = SAMPLE_RATE, labels: str | None = None,
                 label_column: str = "category", file_column: str = "filename", trim_silence: bool = False,
                 threshold_db: float = ACTIVE_THRESHOLD_DB, min_seconds: float = 0.0, name: str | None = None,
                 files: list | None = None, classes: list | None = None, exclude_classes: list | None = None,
                 folds: list | None = None, exclude_folds: list | None = None, fold_column: str = "fold",
                 unlabelled: str = "error"):
        self.root = Path(root)
        if unlabelled not in ("error", "skip"):
            raise AudioError(f"pool {name or self.root.name}: unlabelled must be error or skip, not {unlabelled!r}.")
        if (classes or exclude_classes or folds or exclude_folds) and labels is None:
            raise AudioError(f"pool {name or self.root.name}: class and fold filters need labels (labels: "
                             f"subfolder, or a csv such as ESC-50's meta/esc50.csv).")
        self.sample_rate, self.trim_silence, self.threshold_db = sample_rate, trim_silence, threshold_db
        self.name = name or self.root.name
        paths = [Path(p) for p in files] if files is not None else list_audio(self.root)
        label_of = self._labeller(labels, label_column, file_column, fold_column if folds or exclude_folds else None)
        self.files: list[PoolFile] = []
        skipped: dict[str, list[str]] = {}
        unlabelled_files, seen = [], {"classes": set(), "folds": set()}
        wanted = _Filter(classes, exclude_classes, folds, exclude_folds)
        min_frames_at_pool_rate = min_seconds * sample_rate
        for path in paths:
            stat = path.stat() if path.is_file() else None
            header = _header(str(path), stat.st_mtime_ns, stat.st_size) if stat else "missing"
            if isinstance(header, str):
                skipped.setdefault(header.split(" (")[0], []).append(str(path))
                continue
            frames, rate, channels = header
            if frames * sample_rate / rate < min_frames_at_pool_rate:
                skipped.setdefault(f"shorter than {min_seconds:g} s", []).append(str(path))
                continue
            rel = path.relative_to(self.root).as_posix() if path.is_relative_to(self.root) else path.name
            label, fold = label_of(path, rel)
            if labels is not None and label is None:
                unlabelled_files.append(str(path))
                continue
            seen["classes"].add(label)
            seen["folds"].add(fold)
            if not wanted.keeps(label, fold):
                skipped.setdefault("left out by the class/fold filters", []).append(str(path))
                continue
            self.files.append(PoolFile(path, rel, frames, rate, channels, label))
        if unlabelled_files and unlabelled == "error":
            where = "in the csv " + str(labels) if labels != "subfolder" else "in a class sub-folder"
            raise AudioError(f"pool {self.name}: {len(unlabelled_files)} file(s) are not {where} (e.g. "
                             f"{unlabelled_files[0]}). Add them there, remove them, or set unlabelled: skip.")
        if unlabelled_files:
            skipped["without a class (unlabelled: skip)"] = unlabelled_files
        wanted.check(seen, self.name)
        self.skipped = {reason: len(names) for reason, names in skipped.items()}
        self._report(skipped, len(paths))
        self.by_label: dict[str, list[int]] = {}
        for i, f in enumerate(self.files):
            if f.label is not None:
                self.by_label.setdefault(f.label, []).append(i)
        self._spans: dict[int, tuple[int, int]] = {}

    def _labeller(self, labels, label_column, file_column, fold_column=None):
        """A function (path, relative name) -> (class, fold); None where there is none."""
        if labels is None:
            return lambda path, rel: (None, None)
        if labels == "subfolder":
            if fold_column:
                raise AudioError(f"pool {self.name}: fold filters need a label csv with a {fold_column!r} column "
                                 f"(labels: subfolder has no folds).")
            return lambda path, rel: (rel.split("/")[0] if "/" in rel else None, None)
        csv_path = Path(labels)
        if not csv_path.is_file():
            raise AudioError(f"{csv_path}: label csv not found. Set `labels` to 'subfolder', null or an "
                             f"existing csv with columns {file_column},{label_column}.")
        with csv_path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            needed = [file_column, label_column] + ([fold_column] if fold_column else [])
            missing = [c for c in needed if c not in (reader.fieldnames or [])]
            if missing:
                raise AudioError(f"{csv_path}: missing column(s) {', '.join(missing)} (found: "
                                 f"{', '.join(reader.fieldnames or [])}). Set file_column/label_column/fold_column.")
            table = {row[file_column]: (row[label_column], row[fold_column] if fold_column else None)
                     for row in reader}
        return lambda path, rel: table.get(rel, table.get(path.name, (None, None)))

    def _report(self, skipped: dict[str, list[str]], total: int) -> None:
        if skipped:
            count = sum(len(v) for v in skipped.values())
            reasons = "; ".join(f"{len(v)} {reason} (e.g. {v[0]})" for reason, v in skipped.items())
            log.warning("audio pool %s: skipped %d of %d files: %s", self.name, count, total, reasons)
        if not self.files:
            raise AudioError(f"{self.root}: no usable audio files in pool {self.name!r} "
                             f"({total} found, all skipped). Check the folder in your config or command line.")
        rates = sorted({f.file_rate for f in self.files if f.file_rate != self.sample_rate})
        if rates:
            n = sum(f.file_rate != self.sample_rate for f in self.files)
            log.info("audio pool %s: %d files at %s Hz are resampled to %d Hz when read", self.name, n,
                     "/".join(map(str, rates)), self.sample_rate)
        multi = sum(f.channels > 1 for f in self.files)
        if multi:
            log.info("audio pool %s: %d multi-channel files are averaged to mono", self.name, multi)

    def __len__(self) -> int:
        return len(self.files)

    def num_samples(self, i: int) -> int:
        """Length of file `i` at the pool rate."""
        f = self.files[i]
        return int(f.frames * self.sample_rate // f.file_rate)

    def read(self, i: int, start: int = 0, length: int | None = None) -> torch.Tensor:
        """Samples [start, start + length) of file `i` at the pool rate (a partial read; zero-padded past the end)."""
        f = self.files[i]
        total = self.num_samples(i)
        length = total - start if length is None else length
        ratio = f.file_rate / self.sample_rate
        first = int(math.floor(start * ratio))
        count = min(int(math.ceil(length * ratio)) + 1, f.frames - first)
        try:
            data, _ = sf.read(str(f.path), start=first, frames=max(count, 0), dtype="float32", always_2d=True)
        except Exception as err:
            raise AudioError(f"{f.path}: cannot be read as audio ({err}). Replace or remove the file.") from err
        wav = resample_audio(torch.from_numpy(data.mean(axis=1)), f.file_rate, self.sample_rate)
        wav = wav[:length]
        if not torch.isfinite(wav).all():
            raise AudioError(f"{f.path}: contains NaN or Inf samples. Replace or remove the file.")
        return torch.nn.functional.pad(wav, (0, length - wav.shape[-1]))

    def span(self, i: int) -> tuple[int, int]:
        """Region of file `i` that stretches are drawn from: its active span with `trim_silence`, else all of it."""
        if not self.trim_silence:
            return 0, self.num_samples(i)
        if i not in self._spans:  # needs one full read per file and process; ESC-50 clips are 5 s
            self._spans[i] = active_span(self.read(i), self.sample_rate, self.threshold_db)
        return self._spans[i]

    def read_looped(self, i: int, offset: int, length: int, region: tuple[int, int] | None = None) -> torch.Tensor:
        """`length` samples from `offset`, wrapping around inside `region` (default: the file's span)."""
        a, b = region or self.span(i)
        if b - offset >= length:
            return self.read(i, offset, length)
        looped = self.read(i, a, b - a)
        return loop_to_length(torch.roll(looped, -(offset - a)), length)

    def label_files(self, label: str | None) -> list[int]:
        if label is None:
            return list(range(len(self.files)))
        if label not in self.by_label:
            raise AudioError(f"pool {self.name!r} has no files of class {label!r} "
                             f"(classes: {', '.join(sorted(self.by_label)) or 'none, the pool has no labels'}).")
        return self.by_label[label]

    def random_file(self, rng: np.random.Generator, label: str | None = None, exclude: int | None = None,
                    tries: int = 20) -> int:
        """A random file (of class `label`) with a non-silent span; silent files are skipped."""
        candidates = [i for i in self.label_files(label) if i != exclude]
        if not candidates:
            raise AudioError(f"pool {self.name!r}: no other file of class {label!r} than "
                             f"{self.files[exclude].path if exclude is not None else '-'}. Add files or change "
                             f"the reference strategy.")
        for _ in range(tries):
            i = candidates[int(rng.integers(len(candidates)))]
            a, b = self.span(i)
            if b > a:
                return i
            log.warning("audio pool %s: %s is silent, skipped", self.name, self.files[i].path)
        raise AudioError(f"pool {self.name!r}: {tries} silent files drawn in a row (class {label!r}). "
                         f"Remove silent files from {self.root}.")
