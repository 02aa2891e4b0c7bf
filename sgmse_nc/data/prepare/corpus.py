"""Corpus preparation machinery: clean/noisy pairs converted into `<dst>/<subset>/{clean,noisy}/<id>.wav`
+ manifest.csv (the framework layout), whatever the corpus. A corpus module (e.g. vbdmd.py) lists its pairs
as `PairJob`s and calls `prepare_pairs`.

Every preparation is
- idempotent: a file already written and matching its source (16 kHz, mono, expected length) is kept;
  a second run writes nothing;
- resumable: outputs are written atomically, so an interrupted run simply continues;
- guarded: `<dst>/DONE.json` (and `.in_progress.json` while running) records the dataset, a fingerprint
  of the source and the options; a dst holding another dataset or unknown files is refused.
Structural problems stop the run with one message (PrepareError); an individual bad file (corrupt, empty,
stereo, too short, wrong rate) is skipped, counted and listed in `<dst>/skipped.txt`.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from sgmse_nc.audio import SAMPLE_RATE, AudioError, audio_info, read_audio, write_audio
from sgmse_nc.cli import AUDIO_RATE, WORKERS, Number
from sgmse_nc.data.errors import PrepareError
from sgmse_nc.data.manifest import read_manifest, write_manifest
from sgmse_nc.errors import short_list
from sgmse_nc.io import is_leftover, param_differences, read_json, write_json, write_text_if_changed

DONE_MARKER, PROGRESS_MARKER, SKIPPED_LIST = "DONE.json", ".in_progress.json", "skipped.txt"
MARKER_FORMAT = 1
FinishSubset = Callable[[Path, str, list], list]


@dataclass(frozen=True)
class PairJob:
    subset: str
    id: str
    clean: Path
    noisy: Path
    labels: dict = field(default_factory=dict, compare=False)  # manifest columns besides the id

    def outputs(self, dst: Path) -> tuple[Path, Path]:
        return (dst / self.subset / "clean" / f"{self.id}.wav", dst / self.subset / "noisy" / f"{self.id}.wav")


def resampled_length(frames: int, orig_sr: int, new_sr: int) -> int:
    """Length torchaudio's resample returns: ceil(frames * new / orig)."""
    return -(-frames * new_sr // orig_sr)


def _output_ok(path: Path, sample_rate: int, frames: int) -> bool:
    try:
        info = audio_info(path)
    except AudioError:
        return False
    return info.samplerate == sample_rate and info.channels == 1 and info.frames == frames


def _check_sources(job: PairJob, sample_rate: int, min_seconds: float) -> tuple[int, int]:
    """Header checks of one source pair; returns (source rate, output length), AudioError when unusable."""
    clean, noisy = audio_info(job.clean), audio_info(job.noisy)
    for path, info in ((job.clean, clean), (job.noisy, noisy)):
        if info.channels != 1:
            raise AudioError(f"{path}: has {info.channels} channels, mono is expected.")
        if info.samplerate < sample_rate:
            raise AudioError(f"{path}: sample rate {info.samplerate} Hz, below the target {sample_rate} Hz "
                             f"(the official release is 48 kHz). Replace it with the original file.")
        if info.frames < max(1, min_seconds * info.samplerate):
            raise AudioError(f"{path}: {info.frames / info.samplerate:.3f} s long, at least {min_seconds} s "
                             f"is needed (--min-seconds). Replace it with the original file.")
    if clean.samplerate != noisy.samplerate:
        raise AudioError(f"{job.noisy}: sample rate {noisy.samplerate} Hz but {job.clean} has "
                         f"{clean.samplerate} Hz. A clean/noisy pair must share one rate.")
    if clean.frames != noisy.frames:
        raise AudioError(f"{job.noisy}: {noisy.frames} samples but {job.clean} has {clean.frames}. "
                         f"A clean/noisy pair must have the same length.")
    return clean.samplerate, resampled_length(clean.frames, clean.samplerate, sample_rate)


def convert_pair(job: PairJob, dst: Path, sample_rate: int = SAMPLE_RATE, min_seconds: float = 0.25) -> dict:
    """Resample one pair into dst. Returns {status: written|kept|skipped, reason, source_rate}."""
    try:
        source_rate, length = _check_sources(job, sample_rate, min_seconds)
        outputs = job.outputs(dst)
        if all(_output_ok(out, sample_rate, length) for out in outputs):
            return {"status": "kept", "reason": "", "source_rate": source_rate}
        wavs = [read_audio(source, sample_rate, resample=True, mono="error") for source in (job.clean, job.noisy)]
        for source, wav in zip((job.clean, job.noisy), wavs):
            if wav.numel() != length:  # the header promised more samples than the data holds
                raise AudioError(f"{source}: truncated ({wav.numel()} of {length} samples after resampling). "
                                 f"Replace it with the original file.")
        for wav, out in zip(wavs, outputs):
            write_audio(out, wav, sample_rate)
        return {"status": "written", "reason": "", "source_rate": source_rate}
    except AudioError as err:
        return {"status": "skipped", "reason": str(err), "source_rate": None}


def _convert_star(args):
    return convert_pair(*args)


def _worker_init():
    import torch
    torch.set_num_threads(1)  # one process per core; intra-op threads would oversubscribe


def run_jobs(jobs: list[PairJob], dst: Path, sample_rate: int, min_seconds: float, workers: int = 1,
             progress: bool = True) -> list[dict]:
    """Convert all pairs (in a small process pool when workers > 1); results in the order of `jobs`."""
    args = [(job, dst, sample_rate, min_seconds) for job in jobs]
    bar = dict(total=len(jobs), desc=f"preparing {dst.name}", unit="pair", disable=not progress)
    if workers <= 1:
        return [convert_pair(*a) for a in tqdm(args, **bar)]
    context = multiprocessing.get_context("spawn")  # fork after torch has started threads can hang
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init) as pool:
        return list(tqdm(pool.map(_convert_star, args, chunksize=8), **bar))


def fingerprint(jobs: list[PairJob]) -> str:
    """Hash of the source: ids, labels and file sizes (not paths, so a moved download still matches; not
    subsets, which follow from the options and are compared with them)."""
    digest = hashlib.sha256()
    for job in sorted(jobs, key=lambda j: j.id):
        sizes = [p.stat().st_size for p in (job.clean, job.noisy)]
        digest.update(json.dumps([job.id, sizes, job.labels], sort_keys=True).encode())
    return digest.hexdigest()


def check_destination(dst: Path, marker: dict, expected_files: set[str]) -> None:
    """Refuse a dst that holds another dataset (marker mismatch) or files this preparation would not write.

    Leftover temporary files of an interrupted atomic write are removed.
    """
    for name in (DONE_MARKER, PROGRESS_MARKER):
        path = dst / name
        old = read_json(path, PrepareError)
        if old is None:
            continue
        differences = param_differences({key: old.get(key) for key in ("dataset", "options")},
                                        {key: marker[key] for key in ("dataset", "options")})
        if old.get("fingerprint") != marker["fingerprint"]:
            differences.append("the source files differ (other ids, labels or file sizes)")
        if differences:
            raise PrepareError(f"{dst} already holds a different dataset ({path.name}: "
                               f"{'; '.join(differences)}). Choose another --dst, or delete {dst} to rebuild it.")
    expected_dirs = {str(Path(f).parent) for f in expected_files} | {"."}
    unknown = []
    for path in sorted(p for p in dst.rglob("*") if p.is_file()):
        rel = path.relative_to(dst)
        if rel.as_posix() in expected_files:
            continue
        if is_leftover(path) and str(rel.parent) in expected_dirs:
            path.unlink()  # half-written output of an interrupted run
            continue
        unknown.append(rel.as_posix())
    if unknown:
        raise PrepareError(f"{dst} holds {len(unknown)} file(s) that are not part of this {marker['dataset']} "
                           f"preparation: {short_list(unknown)}. Choose an empty --dst, or remove those files.")


def write_skipped(dst: Path, skipped: list[tuple[PairJob, str]]) -> None:
    path = dst / SKIPPED_LIST
    if not skipped:
        path.unlink(missing_ok=True)
        return
    write_text_if_changed(path, "".join(f"{job.subset}/{job.id}\t{reason}\n" for job, reason in skipped))


def prepare_pairs(dataset: str, jobs: list[PairJob], dst, options: dict, columns: tuple[str, ...],
                  sample_rate: int = SAMPLE_RATE, min_seconds: float = 0.25, workers: int = 1,
                  progress: bool = True, source: str = "", notes=(), counted: dict[str, str] | None = None,
                  extra_files: set[str] = frozenset(), finish_subset: FinishSubset | None = None) -> dict:
    """Shared driver: guard dst, convert pairs, write manifests, skipped.txt and DONE.json; return a summary.

    counted: label columns counted per subset in the summary ({summary key: column}).
    extra_files: further files (relative to dst) the preparation writes, so a rerun does not refuse them.
    finish_subset(dst, subset, rows) -> rows: runs after the conversion of a subset, before its manifest is
        written; it may write more files (e.g. noise references) and add manifest columns.
    """
    dst = Path(dst)
    marker = {"format": MARKER_FORMAT, "dataset": dataset, "fingerprint": fingerprint(jobs), "options": options}
    subsets = sorted({job.subset for job in jobs})
    expected = {f"{job.subset}/{kind}/{job.id}.wav" for job in jobs for kind in ("clean", "noisy")}
    expected |= {f"{s}/manifest.csv" for s in subsets} | {DONE_MARKER, PROGRESS_MARKER, SKIPPED_LIST} | set(extra_files)
    if dst.exists():
        check_destination(dst, marker, expected)
    if not (dst / DONE_MARKER).is_file():
        write_json(dst / PROGRESS_MARKER, {**marker, "source": source})

    results = run_jobs(jobs, dst, sample_rate, min_seconds, workers, progress)
    skipped = [(job, r["reason"]) for job, r in zip(jobs, results) if r["status"] == "skipped"]
    for subset in subsets:
        rows = [{"id": job.id, **job.labels} for job, r in zip(jobs, results)
                if job.subset == subset and r["status"] != "skipped"]
        if finish_subset is not None:
            rows = finish_subset(dst, subset, rows)
        write_manifest(dst / subset / "manifest.csv", rows, columns)
    write_skipped(dst, skipped)

    summary = summarise(jobs, results, counted or {})
    summary["dst"], summary["notes"] = str(dst), list(notes)
    done = {**marker, "source": source, "counts": summary["counts"], "skipped": len(skipped)}
    write_json(dst / DONE_MARKER, done)
    (dst / PROGRESS_MARKER).unlink(missing_ok=True)
    return summary


def summarise(jobs: list[PairJob], results: list[dict], counted: dict[str, str]) -> dict:
    """Counts per subset (files, and the values of each label column in `counted`: {summary key: column}),
    work done, skipped files, source rates."""
    status = Counter(r["status"] for r in results)
    per_subset: dict[str, dict] = {}
    for job, result in zip(jobs, results):
        if result["status"] == "skipped":
            continue
        entry = per_subset.setdefault(job.subset, {"files": 0, **{key: Counter() for key in counted}})
        entry["files"] += 1
        for key, column in counted.items():
            if column in job.labels:
                entry[key][job.labels[column]] += 1
    return {
        "counts": {subset: entry["files"] for subset, entry in sorted(per_subset.items())},
        "subsets": {subset: {k: dict(sorted(v.items())) if isinstance(v, Counter) else v for k, v in entry.items()}
                    for subset, entry in sorted(per_subset.items())},
        "written": status["written"], "kept": status["kept"], "skipped": status["skipped"],
        "skipped_reasons": [r["reason"] for r in results if r["status"] == "skipped"],
        "source_rates": dict(Counter(r["source_rate"] for r in results if r["source_rate"])),
    }


def format_summary(summary: dict) -> str:
    lines = [f"{summary['dst']}: {summary['written']} pair(s) written, {summary['kept']} already there, "
             f"{summary['skipped']} skipped"]
    for subset, entry in summary["subsets"].items():
        lines.append(f"  {subset:5s} {entry['files']:6d} files")
        for key, counts in entry.items():
            if key != "files" and counts:
                shown = [f"{k:g} {v}" if isinstance(k, float) else f"{k} {v}" for k, v in counts.items()]
                lines.append(f"        {key.replace('_', ' ')} ({len(counts)}): {short_list(shown, 12)}")
    rates = sorted(summary["source_rates"].items())
    lines.append("  source rates: " + ", ".join(f"{rate} Hz {n}" for rate, n in rates))
    lines += [f"  note: {note}" for note in summary.get("notes", [])]
    if summary["skipped"]:
        lines.append(f"  {summary['skipped']} skipped file(s) listed in {Path(summary['dst']) / SKIPPED_LIST}; first: "
                     f"{summary['skipped_reasons'][0]}")
    return "\n".join(lines)


def add_corpus_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every corpus preparation takes."""
    parser.add_argument("--dst", required=True, type=Path,
                        help="output root (empty, or a previous run of the same data)")
    parser.add_argument("--jobs", type=WORKERS, default=1, help="worker processes (default 1)")
    parser.add_argument("--sample-rate", type=AUDIO_RATE, default=SAMPLE_RATE, help="output rate in Hz (default 16000)")
    parser.add_argument("--min-seconds", type=Number(float, low=0, high=600), default=0.25, help="shorter files are skipped (default 0.25)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


REFERENCE_COLUMNS = ("reference_file", "reference_offset", "reference_relation", "reference_max_xcorr")


def write_noise_references(dst: Path, subset: str, rows: list[dict], choose, sample_rate: int) -> list[dict]:
    """Write `<subset>/noise_ref/<id>.wav` for every manifest row with `choose(index, row)` (a checked
    sgmse_nc.data.honesty.Choice) and add its REFERENCE_COLUMNS; a rerun keeps the files and rows written."""
    manifest = dst / subset / "manifest.csv"
    before = {r["id"]: r for r in read_manifest(manifest)} if manifest.is_file() else {}
    out = []
    for index, row in enumerate(rows):
        target = dst / subset / "noise_ref" / f"{row['id']}.wav"
        old = before.get(row["id"], {})
        if target.is_file() and old.get("reference_relation"):
            out.append({**row, **{key: old[key] for key in REFERENCE_COLUMNS}})
            continue
        choice = choose(index, row)
        write_audio(target, choice.reference, sample_rate)
        out.append({**row, **choice.manifest_fields()})
    return out
