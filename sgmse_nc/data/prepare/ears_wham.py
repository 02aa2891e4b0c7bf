"""EARS-WHAM (Richter et al. 2024; the sp-uhh/ears_benchmark release, SGMSE+'s 48 kHz EARS-WHAM models) into the
framework layout (sgmse_nc.data.prepare.corpus), with honest noise references cut from the WHAM! recordings:

    python -m sgmse_nc.data.prepare ears_wham --src <EARS-WHAM> --noise <WHAM48kHz>/high_res_wham/audio \\
        --dst data/ears_wham --sample-rate 48000 [--jobs 4]

The release holds `<src>/{train,valid,test}/{clean,noisy}/<speaker>/` (clean `<id>.wav`, noisy `<id>_<snr>dB.wav`,
48 kHz) and `<src>/<subset>.csv` (id, speaker, speech_file, speech_start, speech_end, noise_file, noise_start,
noise_end, snr_dB: which WHAM! recording and which of its samples were mixed in). This writes
`<dst>/{train,valid,test}/{clean,noisy}/<speaker>_<id>.wav`, manifest.csv (id, speaker, snr, noise_file,
noise_start, noise_end and the reference columns) and `<dst>/<subset>/noise_ref/<id>.wav` for every utterance: a
stretch of the SAME WHAM! recording outside the samples mixed into it (the noise scene a deployed model would
have heard before or after), checked by the reference policy (sgmse_nc.data.honesty), so `reference:
noise_ref_dir` trains, validates and tests honestly.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from sgmse_nc.audio import AudioError, read_audio, resample_audio
from sgmse_nc.cli import Number
from sgmse_nc.data.errors import PrepareError
from sgmse_nc.data.honesty import DEFAULT_THRESHOLD, Candidate, ReferencePolicy
from sgmse_nc.data.prepare.corpus import (PairJob, add_corpus_arguments, format_summary, prepare_pairs,
                                          write_noise_references)

SUBSETS = ("train", "valid", "test")
RELEASE_COLUMNS = ("id", "speaker", "noise_file", "noise_start", "noise_end", "snr_dB")
COLUMNS = ("id", "speaker", "snr", "noise_file", "noise_start", "noise_end")
COUNTED = {"speakers": "speaker", "noise_files": "noise_file"}
RELEASE_RATE = 48000  # the rate of the release and of its csv's sample positions
RELATION = "same_recording_other_stretch"


def _read_release_csv(path: Path) -> list[dict]:
    if not path.is_file():
        raise PrepareError(f"{path}: not found. Pass --src the EARS-WHAM folder made by sp-uhh/ears_benchmark's "
                           f"generate_ears_wham.py (it holds train/ valid/ test/ and train.csv, valid.csv, test.csv).")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    missing = [c for c in RELEASE_COLUMNS if rows and c not in rows[0]]
    if not rows or missing:
        raise PrepareError(f"{path}: {'no rows' if not rows else 'no column(s) ' + ', '.join(missing)}; "
                           f"EARS-WHAM's csv has {', '.join(RELEASE_COLUMNS)}. Regenerate it with the release script.")
    return rows


def ears_wham_jobs(src: Path, noise_dir: Path) -> list[PairJob]:
    """Every pair of the release with its manifest labels; a csv row without its files stops the run."""
    if not src.is_dir():
        raise PrepareError(f"--src {src}: folder not found. Pass the EARS-WHAM folder (train/ valid/ test/ + csvs).")
    if not noise_dir.is_dir():
        raise PrepareError(f"--noise {noise_dir}: folder not found. Pass the WHAM! 48 kHz recordings "
                           f"(<WHAM48kHz>/high_res_wham/audio): references are cut from them.")
    jobs = []
    for subset in SUBSETS:
        for row in _read_release_csv(src / f"{subset}.csv"):
            utt, speaker, snr = int(row["id"]), row["speaker"], float(row["snr_dB"])
            clean = src / subset / "clean" / speaker / f"{utt:05}.wav"
            noisy = src / subset / "noisy" / speaker / f"{utt:05}_{snr:.1f}dB.wav"
            for path in (clean, noisy):
                if not path.is_file():
                    raise PrepareError(f"{path}: listed in {src / f'{subset}.csv'} (id {row['id']}) but not found. "
                                       f"Generate the release with --copy_clean, or re-extract it.")
            labels = {"speaker": speaker, "snr": snr, "noise_file": row["noise_file"],
                      "noise_start": int(row["noise_start"]), "noise_end": int(row["noise_end"])}
            jobs.append(PairJob(subset, f"{speaker}_{utt:05}", clean, noisy, labels))
    return jobs


class WhamReferences:
    """Writes `<subset>/noise_ref/<id>.wav`: `ref_seconds` of the utterance's own WHAM! recording taken outside
    the samples mixed into it (after them first, then before, at a few seeded offsets), the first stretch the
    policy accepts (no overlap with the mixed noise, not a near-copy of it). A rerun keeps what is written."""

    def __init__(self, noise_dir: Path, sample_rate: int, ref_seconds: float = 4.0, seed: int = 0):
        self.noise_dir, self.sample_rate, self.ref_seconds, self.seed = noise_dir, sample_rate, ref_seconds, seed
        self.policy = ReferencePolicy(on_failure="error")

    def recording(self, name: str) -> Path:
        path = self.noise_dir / f"{name}.wav"
        if not path.is_file():
            raise PrepareError(f"{path}: the WHAM! recording named in the release csv is missing. Pass --noise the "
                               f"folder the release was generated from (<WHAM48kHz>/high_res_wham/audio).")
        return path

    def stretches(self, path: Path, start: int, end: int, index: int):
        """Candidate stretches of the recording outside [start, end) (positions at the release's 48 kHz)."""
        info = sf.info(str(path))
        scale = info.samplerate / RELEASE_RATE
        start, end, length = int(start * scale), int(end * scale), int(self.ref_seconds * info.samplerate)
        rng = np.random.default_rng([self.seed, index])
        for lo, hi in ((end, info.frames), (0, start)):  # after the mixed part, then before it
            room = hi - lo
            if room < info.samplerate // 4:  # under 0.25 s describes little of the scene
                continue
            n = min(length, room)
            for offset in sorted({lo, *(lo + int(k) for k in rng.integers(0, room - n + 1, size=2))}):
                data, _ = sf.read(str(path), start=offset, stop=offset + n, dtype="float32", always_2d=True)
                wav = resample_audio(torch.from_numpy(data.mean(axis=1)), info.samplerate, self.sample_rate)
                yield Candidate(wav, path.stem, str(offset), RELATION)

    def __call__(self, dst: Path, subset: str, rows: list[dict]) -> list[dict]:
        def choose(index: int, row: dict):
            clean, noisy = (read_audio(dst / subset / kind / f"{row['id']}.wav", self.sample_rate)
                            for kind in ("clean", "noisy"))
            stretches = self.stretches(self.recording(row["noise_file"]), row["noise_start"], row["noise_end"], index)
            return self.policy.choose(noisy - clean, stretches, 0, f"{subset}/{row['id']} (WHAM! {row['noise_file']})",
                                      fix="The recording has no other usable stretch; drop the utterance")
        return write_noise_references(dst, subset, rows, choose, self.sample_rate)


def prepare_ears_wham(src, noise_dir, dst, sample_rate: int = RELEASE_RATE, ref_seconds: float = 4.0,
                      min_seconds: float = 0.25, workers: int = 1, progress: bool = True) -> dict:
    """EARS-WHAM release + its WHAM! recordings -> `<dst>/{train,valid,test}/{clean,noisy,noise_ref}/<id>.wav`."""
    src, noise_dir, dst = Path(src).resolve(), Path(noise_dir).resolve(), Path(dst).resolve()
    for name, folder in (("--src", src), ("--noise", noise_dir)):
        if dst == folder or folder.is_relative_to(dst) or dst.is_relative_to(folder):
            raise PrepareError(f"--dst {dst} overlaps {name} {folder}; choose a separate folder (inputs are never "
                               f"overwritten).")
    jobs = ears_wham_jobs(src, noise_dir)
    options = {"sample_rate": sample_rate, "min_seconds": min_seconds,
               "noise_ref": {"subsets": list(SUBSETS), "relation": RELATION, "seconds": ref_seconds,
                             "xcorr_threshold": DEFAULT_THRESHOLD}}
    extra = {f"{job.subset}/noise_ref/{job.id}.wav" for job in jobs}
    try:
        return prepare_pairs("ears_wham", jobs, dst, options, COLUMNS, sample_rate, min_seconds, workers, progress,
                             source=str(src), counted=COUNTED, extra_files=extra,
                             finish_subset=WhamReferences(noise_dir, sample_rate, ref_seconds))
    except (RuntimeError, sf.LibsndfileError) as err:  # a WHAM! recording that cannot be read
        raise AudioError(f"a WHAM! recording under {noise_dir} cannot be read ({err}). Replace it.") from err


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--src", required=True, type=Path,
                        help="the EARS-WHAM folder of sp-uhh/ears_benchmark (train/ valid/ test/ + the csvs)")
    parser.add_argument("--noise", required=True, type=Path,
                        help="the WHAM! 48 kHz recordings it was mixed from (<WHAM48kHz>/high_res_wham/audio)")
    parser.add_argument("--ref-seconds", type=Number(float, low=0, low_open=True, high=600), default=4.0,
                        help="length of each noise reference cut from the recording (default 4)")
    add_corpus_arguments(parser)
    parser.set_defaults(sample_rate=RELEASE_RATE)  # the release's own rate unless --sample-rate says otherwise


def run(args: argparse.Namespace) -> dict:
    summary = prepare_ears_wham(args.src, args.noise, args.dst, args.sample_rate, args.ref_seconds, args.min_seconds,
                                args.jobs, progress=not args.no_progress)
    print(format_summary(summary))
    return summary
