"""Embedded demo corpus: synthetic speech mixed with synthetic noises, in the VoiceBank-DEMAND layout.

    <out>/DONE.json                     parameters and summary; written last, marks a finished corpus
    <out>/<subset>/clean/<id>.wav       subset in train, valid, test; int16 PCM
    <out>/<subset>/noisy/<id>.wav       same names and lengths as clean/
    <out>/<subset>/noise_ref/<id>.wav   1-2 s of the same noise process, a stretch NOT used in the mix
                                        (0.25 s after it), checked by the reference policy (data.honesty)
    <out>/<subset>/manifest.csv         id, speaker, noise_type, snr, seconds, reference_file,
                                        reference_offset (samples into the noise process; the mix starts at
                                        0), reference_relation, reference_max_xcorr

Nothing is downloaded; generation is deterministic from `seed` (each utterance has its own seed, so the
first N utterances do not change when more are asked for). The corpus is built in a hidden sibling
folder and renamed into place, so an interrupted run never leaves half a corpus at `<out>`; an existing
corpus is reused when its parameters match and never overwritten when they do not.

    sgmse-demo --out data/demo [--num-train N] [--seed S] ...
"""
from __future__ import annotations

import sys
import csv
import json
import logging
import math
import os
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, fields
from itertools import product
from pathlib import Path

import numpy as np

from sgmse_nc.audio import write_audio
from sgmse_nc.data.honesty import similarity
from sgmse_nc.data.levels import PEAK_LIMIT
from sgmse_nc.data.synthetic import NOISES, Speaker, make_noise, random_speaker, speech_like
from sgmse_nc.errors import UserError
from sgmse_nc.io import read_json, refuse_other_params, temp_name

log = logging.getLogger(__name__)

SUBSETS = ("train", "valid", "test")
SUBSET_CODES = {"train": 0, "valid": 1, "test": 2}
SPEAKER_PREFIX = {"train": "tr", "valid": "va", "test": "te"}
SPEAKERS_PER_SUBSET = {"train": 8, "valid": 2, "test": 2}  # valid/test speakers are unseen in train
FORMAT_VERSION = 3  # bump when a code change alters the generated audio: old corpora are then refused
DONE_FILE = "DONE.json"
MANIFEST_COLUMNS = ("id", "speaker", "noise_type", "snr", "seconds", "reference_file", "reference_offset",
                    "reference_relation", "reference_max_xcorr")
REF_GAP_SECONDS = 0.25  # distance between the mixed noise and the reference stretch


class DemoCorpusError(UserError, RuntimeError):
    """The output folder cannot take the demo corpus asked for; the message names the folder and the fix."""


@dataclass(frozen=True)
class DemoParams:
    num_train: int = 200
    num_valid: int = 20
    num_test: int = 20
    seconds: tuple[float, float] = (2.0, 4.0)  # utterance length range
    snrs: tuple[float, ...] = (-5.0, 0.0, 5.0, 10.0)  # train and valid
    test_snrs: tuple[float, ...] = (0.0, 5.0, 10.0)
    noise_types: tuple[str, ...] = tuple(NOISES)
    ref_seconds: tuple[float, float] = (1.0, 2.0)  # noise reference length range
    seed: int = 0
    sample_rate: int = 16000

    def __post_init__(self):
        # Accept lists (Hydra/OmegaConf, JSON) and keep one canonical form, so saved and asked-for compare.
        fix = object.__setattr__
        for name in ("num_train", "num_valid", "num_test", "seed", "sample_rate"):
            fix(self, name, int(getattr(self, name)))
        for name in ("seconds", "snrs", "test_snrs", "ref_seconds"):
            fix(self, name, tuple(float(v) for v in getattr(self, name)))
        fix(self, "noise_types", tuple(str(v) for v in self.noise_types))
        problems = []
        if min(self.num_train, self.num_valid, self.num_test) < 0 or self.num_train < 1:
            problems.append("num_train must be >= 1 and num_valid/num_test >= 0")
        for name in ("seconds", "ref_seconds"):
            low_high = getattr(self, name)
            if len(low_high) != 2 or not 0 < low_high[0] <= low_high[1]:
                problems.append(f"{name} must be (min, max) with 0 < min <= max, got {low_high}")
        if not self.snrs or not self.test_snrs:
            problems.append("snrs and test_snrs need at least one value")
        unknown = [n for n in self.noise_types if n not in NOISES]
        if unknown or not self.noise_types:
            problems.append(f"noise_types {list(unknown) or '[]'} not available; choose from {', '.join(NOISES)}")
        if self.sample_rate < 8000:
            problems.append(f"sample_rate must be >= 8000, got {self.sample_rate}")
        if problems:
            raise ValueError("demo corpus parameters: " + "; ".join(problems) + ".")

    def count(self, subset: str) -> int:
        return {"train": self.num_train, "valid": self.num_valid, "test": self.num_test}[subset]

    def subset_snrs(self, subset: str) -> tuple[float, ...]:
        return self.test_snrs if subset == "test" else self.snrs

    def to_json(self) -> dict:
        return {"format_version": FORMAT_VERSION, **{k: list(v) if isinstance(v, tuple) else v
                                                     for k, v in asdict(self).items()}}


@dataclass
class Utterance:
    id: str
    speaker: str
    noise_type: str
    snr: float
    clean: np.ndarray
    noisy: np.ndarray
    noise_ref: np.ndarray
    ref_offset: int  # where the reference starts in the generated noise process (the mix starts at 0)
    ref_xcorr: float  # its similarity to the mixed noise (sgmse_nc.data.honesty)


def _rng(params: DemoParams, subset: str, purpose: int, index: int = 0) -> np.random.Generator:
    """Independent stream per (seed, subset, purpose, index): utterances never share random numbers."""
    return np.random.default_rng([params.seed, SUBSET_CODES[subset], purpose, index])


def subset_speakers(params: DemoParams, subset: str) -> list[tuple[str, Speaker]]:
    count = max(1, min(SPEAKERS_PER_SUBSET[subset], params.count(subset)))
    return [(f"{SPEAKER_PREFIX[subset]}{k + 1:02d}", random_speaker(_rng(params, subset, 1, k)))
            for k in range(count)]


def subset_conditions(params: DemoParams, subset: str) -> list[tuple[str, float]]:
    """(noise_type, snr) per utterance: every combination once per shuffled block, so counts stay balanced."""
    combos = list(product(params.noise_types, params.subset_snrs(subset)))
    rng = _rng(params, subset, 2)
    blocks = math.ceil(params.count(subset) / len(combos))
    order = np.concatenate([rng.permutation(len(combos)) for _ in range(blocks)]) if blocks else []
    return [combos[i] for i in order[: params.count(subset)]]


def make_utterance(params: DemoParams, subset: str, index: int, noise_type: str, snr: float,
                   speakers: list[tuple[str, Speaker]]) -> Utterance:
    """One clean/noisy pair plus its noise reference, all with the same final gain."""
    sr = params.sample_rate
    rng = _rng(params, subset, 0, index)
    speaker_name, speaker = speakers[index % len(speakers)]
    length = int(rng.uniform(*params.seconds) * sr)
    ref_length = int(rng.uniform(*params.ref_seconds) * sr)
    gap = int(REF_GAP_SECONDS * sr)

    clean = speech_like(length, rng, sr, speaker).astype(np.float64)
    # One continuous stretch of the noise process: the start is mixed, a later, disjoint part is the reference.
    noise = make_noise(noise_type, length + gap + ref_length, rng, sr).astype(np.float64)
    mixed, ref = noise[:length], noise[length + gap:]
    noise_gain = np.sqrt(np.mean(clean ** 2) / (np.mean(mixed ** 2) * 10 ** (snr / 10)))
    noisy, ref = clean + noise_gain * mixed, noise_gain * ref
    measured = similarity(ref, mixed)
    if measured.is_copy():  # cannot happen for these random processes; the policy is checked all the same
        raise DemoCorpusError(f"demo {subset} utterance {index} ({noise_type}): the noise reference is a near-copy "
                              f"of the mixed noise (whitened max xcorr {measured.whitened}). Change the seed.")

    # Speech at -30..-20 dBFS RMS, lowered when needed so no file's peak reaches PEAK_LIMIT.
    level = 10 ** (rng.uniform(-30, -20) / 20) / np.sqrt(np.mean(clean ** 2))
    peak = max(np.abs(clean).max(), np.abs(noisy).max(), np.abs(ref).max())
    level = min(level, PEAK_LIMIT / peak)
    utt_id = f"{speaker_name}_{index // len(speakers) + 1:03d}"
    return Utterance(utt_id, speaker_name, noise_type, float(snr), (level * clean).astype(np.float32),
                     (level * noisy).astype(np.float32), (level * ref).astype(np.float32), length + gap,
                     measured.whitened)


def _write_subset(root: Path, params: DemoParams, subset: str) -> list[dict]:
    speakers = subset_speakers(params, subset)
    rows = []
    for index, (noise_type, snr) in enumerate(subset_conditions(params, subset)):
        utt = make_utterance(params, subset, index, noise_type, snr, speakers)
        for folder, wav in (("clean", utt.clean), ("noisy", utt.noisy), ("noise_ref", utt.noise_ref)):
            write_audio(root / subset / folder / f"{utt.id}.wav", wav, params.sample_rate)
        rows.append({"id": utt.id, "speaker": utt.speaker, "noise_type": utt.noise_type, "snr": utt.snr,
                     "seconds": round(utt.clean.size / params.sample_rate, 4),
                     "reference_file": f"noise_ref/{utt.id}.wav", "reference_offset": utt.ref_offset,
                     "reference_relation": "same_process_disjoint", "reference_max_xcorr": utt.ref_xcorr})
    (root / subset).mkdir(parents=True, exist_ok=True)
    with open(root / subset / "manifest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return rows


def _summarise(rows: list[dict]) -> dict:
    seconds = [r["seconds"] for r in rows]
    return {
        "count": len(rows),
        "seconds_total": round(sum(seconds), 2),
        "seconds_min": min(seconds, default=0.0),
        "seconds_max": max(seconds, default=0.0),
        "speakers": sorted({r["speaker"] for r in rows}),
        "snr_counts": {f"{k:g}": v for k, v in sorted(Counter(r["snr"] for r in rows).items())},
        "noise_counts": dict(sorted(Counter(r["noise_type"] for r in rows).items())),
    }


def read_done(out_dir) -> dict | None:
    """The DONE.json record of a finished corpus, or None when there is none."""
    return read_json(Path(out_dir) / DONE_FILE, DemoCorpusError)


def _check_existing(out: Path, params: DemoParams) -> bool:
    """True when `out` already holds this corpus; raises when it holds anything else; False when free."""
    fix = f"It is never overwritten: use another --out folder, or delete {out} to regenerate it."
    if refuse_other_params(out / DONE_FILE, params.to_json(), fix, DemoCorpusError) is not None:
        return True
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DemoCorpusError(f"{out}: exists and is not a finished demo corpus (no {DONE_FILE}). Use another "
                              f"--out folder, or delete {out} if it is a leftover.")
    return False


def build_demo_corpus(out_dir, params: DemoParams) -> tuple[Path, bool]:
    """Make the corpus unless it is already there; returns (path, whether it was generated now)."""
    out = Path(out_dir).expanduser().absolute()
    if _check_existing(out, params):
        return out, False
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    tmp = temp_name(out)  # the one leftover pattern; mkdir (not mkdtemp's 0700) keeps the user's umask
    tmp.mkdir()
    try:
        summary = {subset: _summarise(_write_subset(tmp, params, subset)) for subset in SUBSETS}
        record = {"params": params.to_json(), "summary": summary,
                  "generation_seconds": round(time.perf_counter() - started, 2),
                  "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        (tmp / DONE_FILE).write_text(json.dumps(record, indent=2) + "\n")
        try:
            os.rename(tmp, out)  # atomic; also replaces an empty folder
        except OSError:
            # Another process (e.g. a second DDP rank) finished first: fine if it made the same corpus.
            if _check_existing(out, params):
                shutil.rmtree(tmp, ignore_errors=True)
                return out, False
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out, True


def make_demo_corpus(out_dir, num_train: int = 200, num_valid: int = 20, num_test: int = 20,
                     seconds=(2.0, 4.0), snrs=(-5.0, 0.0, 5.0, 10.0), test_snrs=(0.0, 5.0, 10.0),
                     noise_types=tuple(NOISES), ref_seconds=(1.0, 2.0), seed: int = 0,
                     sample_rate: int = 16000) -> Path:
    """Write the demo corpus to `out_dir` (skipped when already there with these parameters)."""
    params = DemoParams(num_train, num_valid, num_test, seconds, snrs, test_snrs, noise_types, ref_seconds,
                        seed, sample_rate)
    return build_demo_corpus(out_dir, params)[0]


def ensure_demo_corpus(out_dir, **params) -> Path:
    """The idempotent entry for the trainer and Hydra configs: returns the corpus root, making it if needed.

    In a data config, a dataset's root can be `{_target_: sgmse_nc.data.prepare.demo.ensure_demo_corpus,
    out_dir: data/demo}`; Hydra instantiates it (and so makes the corpus) before the dataset.
    """
    unknown = set(params) - {f.name for f in fields(DemoParams)}
    if unknown:
        raise TypeError(f"ensure_demo_corpus: unknown parameter(s) {sorted(unknown)}; "
                        f"known: {[f.name for f in fields(DemoParams)]}.")
    path, generated = build_demo_corpus(out_dir, DemoParams(**params))
    log.info("%s demo corpus at %s", "generated" if generated else "reusing", path)
    return path


def format_summary(record: dict) -> str:
    lines = []
    for subset, s in record["summary"].items():
        lines.append(f"  {subset:5s} {s['count']:4d} utterances, {s['seconds_total'] / 60:5.1f} min "
                     f"({s['seconds_min']:.2f}-{s['seconds_max']:.2f} s), speakers {','.join(s['speakers'])}")
        lines.append("        SNR dB: " + ", ".join(f"{k}:{v}" for k, v in s["snr_counts"].items()))
        lines.append("        noise:  " + ", ".join(f"{k}:{v}" for k, v in s["noise_counts"].items()))
    return "\n".join(lines)


def main(argv=None) -> int:
    """The exit status (sgmse-demo): 0, or 2 with one `error: ...` line for a problem the user can fix."""
    from sgmse_nc.cli import run_main

    return run_main(_run, argv)


def build_parser():
    from sgmse_nc.cli import AUDIO_RATE, COUNT, SEED, SNR_DB, ArgumentParser, Number

    defaults = DemoParams()
    parser = ArgumentParser(
        prog="sgmse-demo",
        description="Write the synthetic demo corpus (VoiceBank-DEMAND layout, no download).")
    parser.add_argument("--out", default="data/demo", help="output folder (default: %(default)s)")
    parser.add_argument("--num-train", type=COUNT, default=defaults.num_train)
    parser.add_argument("--num-valid", type=Number(int, low=0, high=COUNT.high), default=defaults.num_valid)
    parser.add_argument("--num-test", type=Number(int, low=0, high=COUNT.high), default=defaults.num_test)
    parser.add_argument("--seconds", type=Number(float, low=0, low_open=True, high=600), nargs=2, default=defaults.seconds,
                        metavar=("MIN", "MAX"))
    parser.add_argument("--snrs", type=SNR_DB, nargs="+", default=defaults.snrs, help="train/valid SNRs in dB")
    parser.add_argument("--test-snrs", type=SNR_DB, nargs="+", default=defaults.test_snrs)
    parser.add_argument("--noise-types", nargs="+", default=defaults.noise_types, choices=list(NOISES))
    parser.add_argument("--ref-seconds", type=Number(float, low=0, low_open=True, high=600), nargs=2,
                        default=defaults.ref_seconds, metavar=("MIN", "MAX"))
    parser.add_argument("--seed", type=SEED, default=defaults.seed)
    parser.add_argument("--sample-rate", type=AUDIO_RATE, default=defaults.sample_rate)
    return parser


def _run(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        params = DemoParams(args.num_train, args.num_valid, args.num_test, args.seconds, args.snrs,
                            args.test_snrs, args.noise_types, args.ref_seconds, args.seed, args.sample_rate)
    except ValueError as err:
        parser.error(str(err))
    started = time.perf_counter()
    path, generated = build_demo_corpus(args.out, params)
    record = read_done(path)
    if generated:
        print(f"demo corpus written to {path} in {time.perf_counter() - started:.1f} s")
    else:
        print(f"demo corpus already at {path} with these parameters: nothing to do "
              f"(it took {record['generation_seconds']:.1f} s to generate)")
    print(format_summary(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
