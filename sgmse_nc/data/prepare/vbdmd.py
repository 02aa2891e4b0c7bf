"""VoiceBank-DEMAND (Valentini et al.): the official 48 kHz release, 28-speaker training set, into the
framework layout (sgmse_nc.data.prepare.corpus):

    python -m sgmse_nc.data.prepare vbdmd --src <official VoiceBank-DEMAND download> --dst <root> [--jobs 4]

writes `<root>/{train,valid,test}/{clean,noisy}/<id>.wav` + manifest.csv (id, speaker, noise_type, snr), and
`<root>/{valid,test}/noise_ref/<id>.wav`: honest, deployable noise references (see NoiseReferences).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from sgmse_nc.audio import SAMPLE_RATE, list_audio, read_audio
from sgmse_nc.data.prepare.corpus import (PairJob, add_corpus_arguments, format_summary, prepare_pairs,
                                          write_noise_references)
from sgmse_nc.data.errors import PrepareError
from sgmse_nc.data.honesty import DEFAULT_THRESHOLD, Candidate, ReferencePolicy
from sgmse_nc.data.paired import mismatch_message

VBDMD_COLUMNS = ("id", "speaker", "noise_type", "snr")
NOISE_REF_SUBSETS = ("valid", "test")
VBDMD_COUNTED = {"speakers": "speaker", "noise_types": "noise_type", "snrs": "snr"}  # summary key: column
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
    options = {"sample_rate": sample_rate, "valid_speakers": sorted(valid_speakers), "min_seconds": min_seconds,
               "noise_ref": {"subsets": list(NOISE_REF_SUBSETS), "relation": "other_utterance_same_label",
                             "xcorr_threshold": DEFAULT_THRESHOLD}}
    extra = {f"{job.subset}/noise_ref/{job.id}.wav" for job in jobs if job.subset in NOISE_REF_SUBSETS}
    return prepare_pairs("vbdmd", jobs, dst, options, VBDMD_COLUMNS, sample_rate, min_seconds, workers,
                         progress, source=str(src), notes=notes, counted=VBDMD_COUNTED, extra_files=extra,
                         finish_subset=NoiseReferences(jobs, sample_rate))


class NoiseReferences:
    """Writes `<subset>/noise_ref/<id>.wav` for the valid and test subsets: the noise (noisy − clean) of
    ANOTHER utterance with the same noise label (of the same subset first, then of the others), the first in
    a seeded order that passes the reference policy, so `reference: noise_ref_dir` validates and tests
    honestly and the official test set can be enhanced with references at once. Its manifest rows get
    reference_file (`<subset>/<id>` of the utterance), reference_offset, reference_relation and
    reference_max_xcorr. A rerun keeps the files and rows already written."""

    def __init__(self, jobs: list[PairJob], sample_rate: int, seed: int = 0):
        self.sample_rate, self.seed = sample_rate, seed
        self.by_label: dict[str, list[PairJob]] = {}
        for job in jobs:
            self.by_label.setdefault(job.labels["noise_type"], []).append(job)
        self.policy = ReferencePolicy(on_failure="error", null_option="")  # no null option in a test set

    def noise(self, dst: Path, subset: str, utt: str):
        clean, noisy = (read_audio(dst / subset / kind / f"{utt}.wav", self.sample_rate) for kind in ("clean", "noisy"))
        return noisy - clean

    def partners(self, dst: Path, subset: str, row: dict, index: int):
        rng = np.random.default_rng([self.seed, NOISE_REF_SUBSETS.index(subset), index])
        others = [job for job in self.by_label[row["noise_type"]] if job.id != row["id"]
                  and (dst / job.subset / "noisy" / f"{job.id}.wav").is_file()]  # skipped pairs have no files
        order = rng.permutation(len(others)) if others else []
        for job in sorted((others[int(k)] for k in order), key=lambda job: job.subset != subset):  # stable sort
            yield Candidate(self.noise(dst, job.subset, job.id), f"{job.subset}/{job.id}", "0",
                            "other_utterance_same_label")

    def __call__(self, dst: Path, subset: str, rows: list[dict]) -> list[dict]:
        if subset not in NOISE_REF_SUBSETS:
            return rows

        def choose(index: int, row: dict):
            return self.policy.choose(self.noise(dst, subset, row["id"]), self.partners(dst, subset, row, index),
                                      0, f"{subset}/{row['id']} (noise type {row['noise_type']!r})",
                                      fix="The release needs at least two utterances per noise label")
        return write_noise_references(dst, subset, rows, choose, self.sample_rate)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--src", required=True, type=Path,
                        help="folder of the official 48 kHz release (clean/noisy train 28spk + test folders, logs)")
    add_corpus_arguments(parser)
    parser.add_argument("--valid-speakers", nargs="+", default=list(VBDMD_VALID_SPEAKERS),
                        help="training speakers held out for validation (default: p226 p287, as SGMSE+)")


def run(args: argparse.Namespace) -> dict:
    summary = prepare_vbdmd(args.src, args.dst, args.valid_speakers, args.sample_rate, args.min_seconds,
                            args.jobs, progress=not args.no_progress)
    print(format_summary(summary))
    return summary
