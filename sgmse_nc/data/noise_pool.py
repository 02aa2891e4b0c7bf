"""Audio pools: any folder tree of wavs (noise corpora such as DEMAND, ESC-50, WHAM!, or clean speech),
read in random stretches without loading whole files.

A pool scans its files once (headers only, `soundfile.info`), skips unreadable, empty and too-short files
(counted and reported once), and reads stretches with partial reads at the file's own rate, then
downmixes and resamples to the pool rate (corpora come at 44.1/48 kHz). Optional class labels come
from the first sub-folder or from a csv (e.g. ESC-50's `meta/esc50.csv`).

`trim_silence` is for mostly silent clips (ESC-50): stretches are drawn inside each file's active span
(first to last frame whose energy is within `threshold_db` of the loudest frame), and `active_mask`
tells the mixers which samples count for the SNR.

`PoolSource` turns pools into noise pairs (the noise to mix and its reference, see `NoisePair`).
"""
from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from sgmse_nc.audio import SAMPLE_RATE, AudioError, list_audio, resample_audio
from sgmse_nc.data.example import loop_to_length

log = logging.getLogger(__name__)

FRAME_SECONDS = 0.02
ACTIVE_THRESHOLD_DB = -40.0  # frames quieter than this relative to the loudest frame are "silence"
SILENCE_DBFS = -70.0  # and frames below this absolute level always are


# ----------------------------------------------------------------------------------------- activity

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


# ------------------------------------------------------------------------------------------ the pool

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


# ----------------------------------------------------------------------------------------- noise pairs

@dataclass
class NoisePair:
    """A noise stretch to mix and its reference from the same scene (never the same samples, when possible).

    The provenance fields go into test-set manifests; offsets are in samples at the pool rate, and
    composite noises join their parts with ';'.
    """
    noise: torch.Tensor
    reference: torch.Tensor
    category: str
    noise_file: str = ""
    noise_offset: str = ""
    reference_file: str = ""
    reference_offset: str = ""
    overlapping: bool = False  # the reference shares samples with the noise (recording too short)
    relation: str = ""  # how the reference relates to the noise (manifests' reference_relation)
    info: dict = field(default_factory=dict)  # what augmentations chose (mixing weight, speed factor, ...)


def disjoint_starts(span: int, length: int, ref_length: int, rng: np.random.Generator) -> tuple[int, int] | None:
    """Starts (noise, reference) of two non-overlapping stretches inside [0, span), or None if they do not fit."""
    slack = span - length - ref_length
    if slack < 0:
        return None
    first_gap = int(rng.integers(0, slack + 1))
    second_gap = int(rng.integers(0, slack - first_gap + 1))
    if rng.random() < 0.5:  # noise first
        return first_gap, first_gap + length + second_gap
    return first_gap + ref_length + second_gap, first_gap


def match_active_rms(reference: torch.Tensor, target: torch.Tensor, sample_rate: int = SAMPLE_RATE,
                     threshold_db: float = ACTIVE_THRESHOLD_DB) -> torch.Tensor:
    """Scale `reference` so its active RMS equals that of `target` (clips of a class have arbitrary levels)."""
    def active_rms(x):
        mask = active_mask(x, sample_rate, threshold_db)
        return x[mask].pow(2).mean().sqrt() if mask.any() else x.pow(2).mean().sqrt()
    return reference * (active_rms(target) / active_rms(reference).clamp_min(1e-8))


class PoolSource:
    """Noise pairs from pools. reference="same_recording": another stretch of the noise's own file (disjoint
    when the file is long enough, else the rest of the file looped, else an overlapping stretch at another
    offset, counted); "same_class": a stretch of another file of the same class, level-matched.

    One pool is chosen per draw with probability proportional to `weights`; `label` restricts to one class.
    """

    REFERENCES = ("same_recording", "same_class")

    def __init__(self, pools: list[AudioPool] | AudioPool, weights: list[float] | None = None,
                 reference: str = "same_recording", label: str | None = None, warn_overlap: bool = True):
        self.pools = [pools] if isinstance(pools, AudioPool) else list(pools)
        if not self.pools:
            raise AudioError("no noise pool configured: give at least one noise folder.")
        if reference not in self.REFERENCES:
            raise ValueError(f"reference must be one of {', '.join(self.REFERENCES)}, not {reference!r}.")
        if reference == "same_class":
            unlabelled = [p.name for p in self.pools if not p.by_label]
            if unlabelled:
                raise AudioError(f"reference 'same_class' needs class labels but pool(s) {', '.join(unlabelled)} "
                                 f"have none. Set `labels: subfolder` or a label csv, or use 'same_recording'.")
        weights = np.ones(len(self.pools)) if weights is None else np.asarray(weights, dtype=float)
        if weights.shape != (len(self.pools),) or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"noise pool weights {list(weights)} must be one non-negative number per pool "
                             f"({len(self.pools)}), not all zero.")
        self.weights = weights / weights.sum()
        self.reference, self.label, self.warn_overlap = reference, label, warn_overlap
        self.overlapping_references = 0

    def draw(self, length: int, ref_length: int, rng: np.random.Generator) -> NoisePair:
        pool = self.pools[int(rng.choice(len(self.pools), p=self.weights))] if len(self.pools) > 1 else self.pools[0]
        i = pool.random_file(rng, self.label)
        a, b = pool.span(i)
        label = pool.files[i].label or pool.name
        if self.reference == "same_class" and len(pool.label_files(pool.files[i].label)) > 1:
            start = a + int(rng.integers(0, max(b - a - length, 0) + 1))
            noise = pool.read_looped(i, start, length)
            j = pool.random_file(rng, pool.files[i].label, exclude=i)
            ja, jb = pool.span(j)
            ref_start = ja + int(rng.integers(0, max(jb - ja - ref_length, 0) + 1))
            reference = match_active_rms(pool.read_looped(j, ref_start, ref_length), noise, pool.sample_rate,
                                         pool.threshold_db)
            return NoisePair(noise, reference, label, pool.files[i].name, str(start), pool.files[j].name,
                             str(ref_start), relation="same_class_other_recording")
        start, ref_start, ref_region, overlapping = self._same_recording(a, b, length, ref_length, rng)
        noise = pool.read_looped(i, start, length)
        reference = pool.read_looped(i, ref_start, ref_length, ref_region)
        if overlapping:
            self.overlapping_references += 1
            if self.overlapping_references == 1 and self.warn_overlap:
                log.warning("noise %s (%d samples active) is too short for a reference outside the mixed "
                            "stretch; such references overlap the noise (counted in `overlapping_references`). "
                            "Use longer recordings or reference: same_class.", pool.files[i].path, b - a)
        relation = "same_recording_overlapping" if overlapping else "same_recording_disjoint"
        return NoisePair(noise, reference, label, pool.files[i].name, str(start), pool.files[i].name,
                         str(ref_start), overlapping=overlapping, relation=relation)

    @staticmethod
    def _same_recording(a: int, b: int, length: int, ref_length: int, rng: np.random.Generator):
        """(noise start, reference start, reference region, overlapping) inside the span [a, b)."""
        span = b - a
        starts = disjoint_starts(span, length, ref_length, rng)
        if starts is not None:
            return a + starts[0], a + starts[1], None, False
        rest = span - length
        if rest >= ref_length // 4:  # noise at one end, the reference loops over the rest of the file
            if rng.random() < 0.5:
                return a, a + length, (a + length, b), False
            return b - length, a, (a, a + rest), False
        # The noise covers (almost) the whole span: the reference can only be another offset of it.
        start = a + int(rng.integers(0, max(rest, 0) + 1))
        ref_start = a + (start - a + max(span // 2, 1)) % max(span, 1)
        return start, ref_start, None, True
