"""Turn downloaded corpora into the framework layout `<dst>/<subset>/{clean,noisy}/<id>.wav` + manifest.csv.

    python -m sgmse_nc.data.prepare vbdmd --src <official VoiceBank-DEMAND download> --dst <root> [--jobs 4]

Every preparation is
- idempotent: a file already written and matching its source (16 kHz, mono, expected length) is kept;
  a second run writes nothing;
- resumable: outputs are written atomically, so an interrupted run simply continues;
- guarded: `<dst>/DONE.json` (and `.in_progress.json` while running) records the dataset, a fingerprint
  of the source and the options; a dst holding another dataset or unknown files is refused.
Structural problems (missing folders or logs, clean/noisy names that do not match) stop the run with one
message; an individual bad file (corrupt, empty, stereo, too short, wrong rate) is skipped, counted and
listed in `<dst>/skipped.txt`.

Other corpora are added as an entry of `SUBCOMMANDS` (arguments + run function).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import multiprocessing
import os
import sys
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from tqdm import tqdm

from sgmse_nc.audio import SAMPLE_RATE, AudioError, audio_info, list_audio, read_audio, write_audio
from sgmse_nc.data.manifest import VBDMD_COLUMNS, ManifestError, write_manifest, write_text_atomic
from sgmse_nc.data.paired import mismatch_message

DONE_MARKER, PROGRESS_MARKER, SKIPPED_LIST = "DONE.json", ".in_progress.json", "skipped.txt"
MARKER_FORMAT = 1


class PrepareError(ValueError):
    """A structural problem with the source or destination; the message names it and the fix."""


# --------------------------------------------------------------------------------------------------
# Generic machinery: one job = one clean/noisy pair converted to the target rate.

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
        if not path.is_file():
            continue
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise PrepareError(f"{path}: unreadable marker ({err}). Delete {dst} or choose another --dst.") from None
        differences = [f"{key}: {json.dumps(old.get(key), sort_keys=True)} there, "
                       f"{json.dumps(marker[key], sort_keys=True)} now"
                       for key in ("dataset", "options") if old.get(key) != marker[key]]
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
        if path.name.startswith("tmp") and ".tmp." in path.name and str(rel.parent) in expected_dirs:
            path.unlink()  # half-written output of an interrupted run (see write_audio)
            continue
        unknown.append(rel.as_posix())
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else "")
        raise PrepareError(f"{dst} holds {len(unknown)} file(s) that are not part of this {marker['dataset']} "
                           f"preparation: {shown}. Choose an empty --dst, or remove those files.")


def write_json(path: Path, data: dict) -> bool:
    """Atomic write, skipped when the content is unchanged (so a rerun writes nothing)."""
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    write_text_atomic(path, text)
    return True


def write_skipped(dst: Path, skipped: list[tuple[PairJob, str]]) -> None:
    path = dst / SKIPPED_LIST
    if not skipped:
        path.unlink(missing_ok=True)
        return
    text = "".join(f"{job.subset}/{job.id}\t{reason}\n" for job, reason in skipped)
    if not (path.is_file() and path.read_text(encoding="utf-8") == text):
        write_text_atomic(path, text)


def prepare_pairs(dataset: str, jobs: list[PairJob], dst, options: dict, columns: tuple[str, ...],
                  sample_rate: int = SAMPLE_RATE, min_seconds: float = 0.25, workers: int = 1,
                  progress: bool = True, source: str = "", notes=()) -> dict:
    """Shared driver: guard dst, convert pairs, write manifests, skipped.txt and DONE.json; return a summary."""
    dst = Path(dst)
    marker = {"format": MARKER_FORMAT, "dataset": dataset, "fingerprint": fingerprint(jobs), "options": options}
    subsets = sorted({job.subset for job in jobs})
    expected = {f"{job.subset}/{kind}/{job.id}.wav" for job in jobs for kind in ("clean", "noisy")}
    expected |= {f"{s}/manifest.csv" for s in subsets} | {DONE_MARKER, PROGRESS_MARKER, SKIPPED_LIST}
    if dst.exists():
        check_destination(dst, marker, expected)
    if not (dst / DONE_MARKER).is_file():
        write_json(dst / PROGRESS_MARKER, {**marker, "source": source})

    results = run_jobs(jobs, dst, sample_rate, min_seconds, workers, progress)
    skipped = [(job, r["reason"]) for job, r in zip(jobs, results) if r["status"] == "skipped"]
    for subset in subsets:
        rows = [{"id": job.id, **job.labels} for job, r in zip(jobs, results)
                if job.subset == subset and r["status"] != "skipped"]
        write_manifest(dst / subset / "manifest.csv", rows, columns)
    write_skipped(dst, skipped)

    summary = summarise(jobs, results)
    summary["dst"], summary["notes"] = str(dst), list(notes)
    done = {**marker, "source": source, "counts": summary["counts"], "skipped": len(skipped)}
    write_json(dst / DONE_MARKER, done)
    (dst / PROGRESS_MARKER).unlink(missing_ok=True)
    return summary


def summarise(jobs: list[PairJob], results: list[dict]) -> dict:
    """Counts per subset (files, speakers, noise types, SNRs), work done, skipped files, source rates."""
    status = Counter(r["status"] for r in results)
    per_subset: dict[str, dict] = {}
    for job, result in zip(jobs, results):
        if result["status"] == "skipped":
            continue
        entry = per_subset.setdefault(job.subset, {"files": 0, "speakers": Counter(), "noise_types": Counter(),
                                                   "snrs": Counter()})
        entry["files"] += 1
        for key, column in (("speakers", "speaker"), ("noise_types", "noise_type"), ("snrs", "snr")):
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
        speakers = entry["speakers"]
        shown = ", ".join(speakers) if len(speakers) <= 8 else f"{', '.join(list(speakers)[:8])}, ..."
        lines.append(f"  {subset:5s} {entry['files']:6d} files, {len(speakers)} speaker(s) ({shown})")
        if entry["noise_types"]:
            lines.append("        noise types: " + ", ".join(f"{k} {v}" for k, v in entry["noise_types"].items()))
        if entry["snrs"]:
            lines.append("        SNRs (dB):   " + ", ".join(f"{k:g} {v}" for k, v in entry["snrs"].items()))
    rates = sorted(summary["source_rates"].items())
    lines.append("  source rates: " + ", ".join(f"{rate} Hz {n}" for rate, n in rates))
    lines += [f"  note: {note}" for note in summary.get("notes", [])]
    if summary["skipped"]:
        lines.append(f"  {summary['skipped']} skipped file(s) listed in {Path(summary['dst']) / SKIPPED_LIST}; first: "
                     f"{summary['skipped_reasons'][0]}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# VoiceBank-DEMAND (Valentini et al.): the official 48 kHz release, 28-speaker training set.

VBDMD_FOLDERS = {  # (subset of the release, kind) -> official folder name
    ("train", "clean"): "clean_trainset_28spk_wav",
    ("train", "noisy"): "noisy_trainset_28spk_wav",
    ("test", "clean"): "clean_testset_wav",
    ("test", "noisy"): "noisy_testset_wav",
}
VBDMD_LOGS = {"train": "log_trainset_28spk.txt", "test": "log_testset.txt"}  # in the release's logfiles.zip
VBDMD_PAIRS = {"train": 11572, "test": 824}  # sizes of the official release (train includes the valid speakers)
VBDMD_VALID_SPEAKERS = ("p226", "p287")  # held out of training for validation, as SGMSE+ does


def _folder_aliases(official: str) -> set[str]:
    stem = official[:-len("_wav")]
    return {official.lower(), stem.lower()}


def find_vbdmd_sources(src: Path) -> tuple[dict, dict]:
    """Locate the four audio folders and two logs anywhere under src (names matched case-insensitively,
    with or without the `_wav` suffix). Missing or ambiguous ones are an error naming the official name."""
    if not src.is_dir():
        raise PrepareError(f"{src}: folder not found. Pass --src the folder of the official VoiceBank-DEMAND "
                           f"download (holding {', '.join(VBDMD_FOLDERS.values())} and the log files).")
    aliases = {key: _folder_aliases(name) for key, name in VBDMD_FOLDERS.items()}
    folders: dict = {key: [] for key in VBDMD_FOLDERS}
    logs: dict = {key: [] for key in VBDMD_LOGS}
    for root, dirs, files in os.walk(src):
        for name in dirs:
            for key, names in aliases.items():
                if name.lower() in names:
                    folders[key].append(Path(root) / name)
        for name in files:
            lower = name.lower()
            if lower.startswith("log_") and lower.endswith(".txt"):
                if "trainset_28spk" in lower:
                    logs["train"].append(Path(root) / name)
                elif "testset" in lower:
                    logs["test"].append(Path(root) / name)
    found_folders = {key: _pick_folder(src, VBDMD_FOLDERS[key], paths) for key, paths in folders.items()}
    found_logs = {key: _pick_log(src, VBDMD_LOGS[key], paths) for key, paths in logs.items()}
    return found_folders, found_logs


def _pick_folder(src: Path, official: str, paths: list[Path]) -> Path:
    with_audio = [p for p in paths if list_audio(p, recursive=False)]
    if not paths:
        raise PrepareError(f"{src}: no folder named {official} (or {official[:-4]}) found. It is "
                           f"{official}.zip of the official release; unzip it under --src.")
    if not with_audio:
        raise PrepareError(f"{paths[0]}: no .wav files in it. Unzip {official}.zip of the official release there.")
    if len(with_audio) > 1:
        raise PrepareError(f"{src}: {len(with_audio)} folders named {official}: "
                           f"{', '.join(map(str, with_audio))}. Pass --src a folder that holds only one copy "
                           f"(the 48 kHz release).")
    return with_audio[0]


def _pick_log(src: Path, official: str, paths: list[Path]) -> Path:
    if not paths:
        raise PrepareError(f"{src}: no log file {official} found (noise type and SNR of each utterance). It is "
                           f"in logfiles.zip of the official release; unzip it under --src.")
    if len({p.read_bytes() for p in paths}) > 1:
        raise PrepareError(f"{src}: {len(paths)} different files match {official}: "
                           f"{', '.join(map(str, paths))}. Keep one.")
    return paths[0]


def read_vbdmd_log(path: Path) -> dict[str, tuple[str, float]]:
    """`p257_001 bus 1.750000e+01` lines -> {id: (noise label, SNR dB)}."""
    labels: dict[str, tuple[str, float]] = {}
    for line_no, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            utt, label, snr = fields
            snr = float(snr)
        except ValueError:
            raise PrepareError(f"{path}, line {line_no}: {line.strip()!r} is not `<id> <noise type> <SNR dB>`. "
                               f"Use the log file of the official release.") from None
        if labels.get(utt, (label, snr)) != (label, snr):
            raise PrepareError(f"{path}, line {line_no}: {utt} is listed twice with different labels.")
        labels[utt] = (label, snr)
    if not labels:
        raise PrepareError(f"{path}: empty. Use the log file of the official release.")
    return labels


def audio_by_id(folder: Path) -> dict[str, Path]:
    """{file stem: path} of the audio files directly in folder; two files with one stem are an error."""
    files: dict[str, Path] = {}
    for path in list_audio(folder, recursive=False):
        if path.stem in files:
            raise PrepareError(f"{folder}: both {files[path.stem].name} and {path.name} exist. Keep one.")
        files[path.stem] = path
    return files


def pair_by_id(clean_dir: Path, noisy_dir: Path) -> list[tuple[str, Path, Path]]:
    """(id, clean, noisy) matched by file name; any name in only one folder stops the run."""
    clean, noisy = audio_by_id(clean_dir), audio_by_id(noisy_dir)
    problem = mismatch_message(clean, noisy, clean_dir, noisy_dir)
    if problem:
        raise PrepareError(f"{problem} Re-extract the official zips so both hold the same names.")
    return [(utt, clean[utt], noisy[utt]) for utt in sorted(clean)]


def vbdmd_jobs(src: Path, valid_speakers=VBDMD_VALID_SPEAKERS) -> tuple[list[PairJob], list[str]]:
    """All pairs of the release with their subset (train / valid / test) and labels, and notes for the
    summary (log lines without audio: a partly extracted download would otherwise go unnoticed)."""
    folders, logs = find_vbdmd_sources(src)
    jobs, notes = [], []
    for part in ("train", "test"):
        labels = read_vbdmd_log(logs[part])
        pairs = pair_by_id(folders[(part, "clean")], folders[(part, "noisy")])
        unlabelled = [utt for utt, _, _ in pairs if utt not in labels]
        if unlabelled:
            raise PrepareError(f"{logs[part]}: no line for {len(unlabelled)} file(s) of "
                               f"{folders[(part, 'noisy')]} (e.g. {', '.join(unlabelled[:5])}). The log and the "
                               f"wav folders must come from the same release ({VBDMD_LOGS[part]}).")
        without_audio = sorted(labels.keys() - {utt for utt, _, _ in pairs})
        if without_audio:
            notes.append(f"{logs[part].name} lists {len(without_audio)} utterance(s) without a wav file (e.g. "
                         f"{', '.join(without_audio[:3])}); the official release has {VBDMD_PAIRS[part]} {part} "
                         f"pairs. Check that the zips were fully extracted.")
        for utt, clean, noisy in pairs:
            speaker = utt.split("_")[0]
            subset = "valid" if part == "train" and speaker in valid_speakers else part
            noise_type, snr = labels[utt]
            labels_row = {"speaker": speaker, "noise_type": noise_type, "snr": snr}
            jobs.append(PairJob(subset, utt, clean, noisy, labels_row))
    train_speakers = {job.labels["speaker"] for job in jobs if job.subset != "test"}
    missing = sorted(set(valid_speakers) - train_speakers)
    if missing:
        raise PrepareError(f"{folders[('train', 'clean')]}: no files of validation speaker(s) "
                           f"{', '.join(missing)}. Pass --valid-speakers with speakers of the training set.")
    return jobs, notes


def prepare_vbdmd(src, dst, valid_speakers=VBDMD_VALID_SPEAKERS, sample_rate: int = SAMPLE_RATE,
                  min_seconds: float = 0.25, workers: int = 1, progress: bool = True) -> dict:
    """Official VoiceBank-DEMAND release -> `<dst>/{train,valid,test}/{clean,noisy}/<id>.wav` + manifests."""
    src, dst = Path(src).resolve(), Path(dst).resolve()
    if dst == src or src.is_relative_to(dst):
        raise PrepareError(f"--dst {dst} would hold the source {src}; choose a separate folder "
                           f"(inputs are never overwritten).")
    jobs, notes = vbdmd_jobs(src, tuple(valid_speakers))
    options = {"sample_rate": sample_rate, "valid_speakers": sorted(valid_speakers), "min_seconds": min_seconds}
    return prepare_pairs("vbdmd", jobs, dst, options, VBDMD_COLUMNS, sample_rate, min_seconds, workers,
                         progress, source=str(src), notes=notes)


# --------------------------------------------------------------------------------------------------
# Command line: one subcommand per corpus.

@dataclass(frozen=True)
class Subcommand:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], dict]


def _common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dst", required=True, type=Path,
                        help="output root (empty, or a previous run of the same data)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--sample-rate", type=int, default=SAMPLE_RATE, help="output rate in Hz (default 16000)")
    parser.add_argument("--min-seconds", type=float, default=0.25, help="shorter files are skipped (default 0.25)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _vbdmd_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--src", required=True, type=Path,
                        help="folder of the official 48 kHz release (clean/noisy train 28spk + test folders, logs)")
    _common_arguments(parser)
    parser.add_argument("--valid-speakers", nargs="+", default=list(VBDMD_VALID_SPEAKERS),
                        help="training speakers held out for validation (default: p226 p287, as SGMSE+)")


def _vbdmd_run(args: argparse.Namespace) -> dict:
    return prepare_vbdmd(args.src, args.dst, args.valid_speakers, args.sample_rate, args.min_seconds,
                         args.jobs, progress=not args.no_progress)


SUBCOMMANDS: dict[str, Subcommand] = {
    "vbdmd": Subcommand("VoiceBank-DEMAND from the official download", _vbdmd_arguments, _vbdmd_run),
}


def all_subcommands() -> dict[str, Subcommand]:
    """Corpus preparation plus the test-set builders (imported here: builders.py imports this module)."""
    from sgmse_nc.data.builders import SUBCOMMANDS as BUILDERS

    return {**SUBCOMMANDS, **BUILDERS}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sgmse_nc.data.prepare", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    for name, command in all_subcommands().items():
        sub = commands.add_parser(name, help=command.help)
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    try:
        summary = args.run(args)
    except (PrepareError, AudioError, ManifestError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if "dst" in summary:
        print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
