"""Test sets at fixed SNRs, the machinery shared by the builders (esc50.py, nonstationary.py): clean test speech mixed with ESC-50 noise (out of distribution) or with noise that
changes within the utterance (non-stationary).

    python -m sgmse_nc.data.prepare esc50 --esc50 <ESC-50-master> --clean <vbdmd>/test/clean \\
        --out <root>/esc50_ood --snrs 0 5 10 --seed 0
    python -m sgmse_nc.data.prepare nonstationary --clean <vbdmd>/test/clean --out <root>/nonstationary \\
        --noise <DEMAND> --snrs 0 5 10 --seed 0

Both write, for every SNR k, `<out>/snr_<k>/{clean,noisy,noise_ref}/<id>.wav` (PCM 16 at `--sample-rate`,
default 16 kHz: noise of any rate is resampled to it, clean speech below it is refused) and
`<out>/snr_<k>/manifest.csv`; each `snr_<k>` folder is a paired subset (PairedFolderDataset(root=<out>,
subset="snr_5")) whose `noise_ref/` serves the `noise_ref_dir` reference strategy. An utterance gets the same
noise and reference at every SNR; only the gain differs. Every reference passes the reference policy
(sgmse_nc.data.honesty: no overlap with the mixed noise, no near-copy of it; rejected candidates are redrawn
and counted in DONE.json). Manifest columns: id, (kind), category, snr, speech_file, noise_file,
noise_offset, reference_file, reference_offset (offsets in samples at the set's rate inside the source file;
composite noises join their parts with ';'), reference_relation (e.g. same_recording_disjoint,
same_class_other_recording, independent_draw), reference_max_xcorr (whitened max normalised
cross-correlation with the mixed noise), achieved_snr (dB: speech power over the power of the ACTIVE noise
frames, measured after level handling), (detail).

Builds are deterministic for a seed (every item draws from a generator seeded by (seed, item)), atomic
(each file is written to a temporary name, then renamed), resumable (`PARAMS.json` while running;
finished files are kept) and idempotent (`DONE.json` holds the parameters, the rate among them: the same
command again only prints the summary, different parameters on an existing folder are refused and nothing is
overwritten).
"""
from __future__ import annotations

import argparse
import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from tqdm import tqdm

from sgmse_nc.audio import SAMPLE_RATE, rms, write_audio
from sgmse_nc.cli import AUDIO_RATE, COUNT, SEED, SNR_DB, Number
from sgmse_nc.data.errors import BuildError
from sgmse_nc.data.honesty import ReferencePolicy, pair_candidates
from sgmse_nc.data.levels import SILENT_RMS, mix_at_snr
from sgmse_nc.data.manifest import speech_id, write_manifest
from sgmse_nc.data.noise_pool import AudioPool
from sgmse_nc.data.noise_source import NoisePair
from sgmse_nc.data.references import STRETCHES
from sgmse_nc.io import refuse_other_params, write_text_atomic

log = logging.getLogger(__name__)

PARAMS_FILE, DONE_FILE = "PARAMS.json", "DONE.json"
FORMAT_VERSION = 2  # 2: references pass the reference policy; manifests record relation and max xcorr
SNR_SET_COLUMNS = ("id", "category", "snr", "speech_file", "noise_file", "noise_offset", "reference_file",
                   "reference_offset", "reference_relation", "reference_max_xcorr", "achieved_snr")


# ------------------------------------------------------------------------------------- output folder

def snr_folder(snr: float) -> str:
    return f"snr_{snr:g}"


def claim_output(out: Path, params: dict) -> dict | None:
    """Make `out` ours for a build with `params`; return the finished summary when it is already built.

    A folder built or being built with other parameters, or a non-empty folder no builder wrote, is refused
    before anything is written.
    """
    for name in (DONE_FILE, PARAMS_FILE):
        old = refuse_other_params(out / name, _as_recorded(out / name, params),
                                  f"Use another --out, or delete {out} to rebuild.", BuildError)
        if old is not None:
            return old.get("summary", {}) if name == DONE_FILE else None
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BuildError(f"{out}: exists and holds no {DONE_FILE}/{PARAMS_FILE} of a builder. Nothing was written. "
                         f"Give an empty or new --out folder.")
    write_text_atomic(out / PARAMS_FILE, json.dumps({"params": params}, indent=2, sort_keys=True))
    return None


def _as_recorded(marker: Path, params: dict) -> dict:
    """`params` as a marker written before the rate was an option holds them: those sets are 16 kHz."""
    if params.get("sample_rate") == SAMPLE_RATE and marker.is_file():
        recorded = json.loads(marker.read_text()).get("params", {})
        if "sample_rate" not in recorded:
            return {k: v for k, v in params.items() if k != "sample_rate"}
    return params


def canonical(params: dict) -> dict:
    """JSON-safe, comparable parameters (paths resolved, tuples as lists)."""
    def plain(value):
        if isinstance(value, Path):
            return str(value.resolve())
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value
    return json.loads(json.dumps(plain(params)))


# -------------------------------------------------------------------------------------------- render

@dataclass
class Item:
    id: str
    clean: torch.Tensor
    pair: NoisePair
    speech_file: str
    labels: dict  # manifest columns before "snr" (kind, category)
    extra: dict  # manifest columns after "achieved_snr" (detail)
    xcorr: float  # the reference's measured similarity to the mixed noise (sgmse_nc.data.honesty)


def honest_pair(policy: ReferencePolicy, draw: Callable[[], NoisePair], what: str,
                fallback: Callable[[], NoisePair] | None = None, fix: str = "") -> tuple[NoisePair, float]:
    """The first drawn pair whose reference passes the policy (another stretch, then `fallback`: another
    recording of the class), and its measured similarity; a BuildError-like HonestyError when none does,
    ending with `fix` (the builder's own options: every hint names a value its command accepts)."""
    choice = policy.choose(None, pair_candidates(draw, STRETCHES, fallback), 0, what,
                           fix=fix or "Give longer noise clips or more clips per class")
    return choice.payload, choice.xcorr


def policy_notes(policy: ReferencePolicy) -> dict:
    """What the summary (DONE.json) says about the references: candidates rejected, and why."""
    return {"references_rejected_overlap": policy.counts["rejected_overlap"],
            "references_rejected_near_copy": policy.counts["rejected_copy"]}


def render(out: Path, items: Iterable[Item], snrs: list[float],
           sample_rate: int = SAMPLE_RATE) -> dict[float, list[dict]]:
    """Mix every item at every SNR; write the three wavs (files already there from an interrupted run are
    complete, because writes are atomic, and kept) and return the manifest rows per SNR."""
    rows: dict[float, list[dict]] = {snr: [] for snr in snrs}
    seen: dict[str, str] = {}
    for item in items:
        if item.id in seen:
            raise BuildError(f"{item.speech_file} and {seen[item.id]} both give the id {item.id!r} (sub-folders "
                             f"are joined with '_'). Rename one of them.")
        seen[item.id] = item.speech_file
        for snr in snrs:
            mix = mix_at_snr(item.clean, item.pair.noise, item.pair.reference, snr, sample_rate)
            folder = out / snr_folder(snr)
            for sub, wav in (("clean", mix.clean), ("noisy", mix.noisy), ("noise_ref", mix.reference)):
                path = folder / sub / f"{item.id}.wav"
                if not path.is_file():
                    write_audio(path, wav, sample_rate)
            p = item.pair
            rows[snr].append({"id": item.id, **item.labels, "snr": float(snr), "speech_file": item.speech_file,
                              "noise_file": p.noise_file, "noise_offset": p.noise_offset,
                              "reference_file": p.reference_file, "reference_offset": p.reference_offset,
                              "reference_relation": p.relation, "reference_max_xcorr": item.xcorr,
                              "achieved_snr": round(mix.achieved_snr, 3) + 0.0, **item.extra})  # + 0.0: no "-0"
    return rows


def finish(out: Path, name: str, params: dict, rows: dict[float, list[dict]], columns: tuple[str, ...],
           group: str, notes: dict) -> dict:
    for snr, snr_rows in rows.items():
        write_manifest(out / snr_folder(snr) / "manifest.csv", snr_rows, columns)
    first = next(iter(rows.values()))
    if not first:
        raise BuildError(f"no item was built: every clean file was skipped ({notes}). Check --clean.")
    summary = {
        "builder": name,
        "out": str(out),
        "items": len(first),
        "sample_rate": params["sample_rate"],
        "per_snr": {snr_folder(snr): {"count": len(r),
                                      "mean_achieved_snr": round(float(np.mean([x["achieved_snr"] for x in r])), 3)
                                      if r else None} for snr, r in rows.items()},
        f"per_{group}": dict(sorted(Counter(r[group] for r in first).items())),
        **notes,
    }
    write_text_atomic(out / DONE_FILE, json.dumps({"params": params, "summary": summary}, indent=2))
    (out / PARAMS_FILE).unlink(missing_ok=True)
    return summary


def format_summary(summary: dict) -> str:
    lines = [f"{summary['builder']}: {summary['items']} items per SNR at {summary['sample_rate']} Hz in {summary['out']}"]
    for folder, stats in summary["per_snr"].items():
        lines.append(f"  {folder}: {stats['count']} items, mean achieved SNR {stats['mean_achieved_snr']} dB")
    for key, value in summary.items():
        if key.startswith("per_") and key != "per_snr":
            lines.append(f"  {key[4:]}: " + ", ".join(f"{k} {v}" for k, v in value.items()))
    for key, value in summary.items():
        if key not in ("builder", "items", "out", "per_snr", "sample_rate") and not key.startswith("per_"):
            lines.append(f"  {key}: {value}")
    return "\n".join(lines)


def speech_items(speech: AudioPool, count: int, seed: int,
                 skipped: Counter) -> Iterator[tuple[int, str, torch.Tensor, np.random.Generator]]:
    """(item index, id, clean wav, item generator) for `count` items cycling over the speech pool; silent
    files are skipped and counted."""
    for k in range(count):
        i = k % len(speech)
        clean = speech.read(i)
        if rms(clean) <= SILENT_RMS:
            skipped[speech.files[i].name] += 1
            if skipped[speech.files[i].name] == 1:
                log.warning("%s: silent clean speech, skipped (counted in skipped_speech)", speech.files[i].path)
            continue
        repeat = f"_{k // len(speech)}" if count > len(speech) else ""
        yield k, speech_id(speech.files[i].name) + repeat, clean, np.random.default_rng([seed, 1, k])


def balanced(labels: list[str], count: int, seed: int) -> list[str]:
    """`count` labels, each used equally often (±1), in a seeded random order."""
    order = np.random.default_rng([seed, 0]).permutation(count)
    return [labels[int(j) % len(labels)] for j in order]


def speech_pool(clean: Path, min_seconds: float, sample_rate: int = SAMPLE_RATE) -> AudioPool:
    """The clean test speech read at `sample_rate`; speech recorded below it is refused (upsampled, it would
    have nothing above its own Nyquist frequency, and the set would claim a band it does not hold)."""
    if not clean.is_dir():
        raise BuildError(f"{clean}: clean speech folder not found. Give --clean <vbdmd root>/test/clean.")
    pool = AudioPool(clean, sample_rate, min_seconds=min_seconds, name="clean speech")
    low = [f for f in pool.files if f.file_rate < sample_rate]
    if low:
        raise BuildError(f"{low[0].path}: clean speech at {low[0].file_rate} Hz ({len(low)} of {len(pool)} file(s) "
                         f"below {sample_rate} Hz), the set is built at --sample-rate {sample_rate}. Give clean "
                         f"speech at {sample_rate} Hz or more (e.g. the test/clean of a corpus prepared with "
                         f"--sample-rate {sample_rate}), or build at --sample-rate {low[0].file_rate}.")
    return pool


def progress_bar(iterable, total: int, enabled: bool, desc: str):
    return tqdm(iterable, total=total, desc=desc, disable=not enabled, unit="item")


# ------------------------------------------------------------------------------------------------ CLI

def add_snr_set_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clean", required=True, type=Path,
                        help="folder of clean test speech (e.g. <vbdmd>/test/clean)")
    parser.add_argument("--out", required=True, type=Path, help="output folder (new, empty, or a previous run)")
    parser.add_argument("--snrs", nargs="+", type=SNR_DB, default=[0.0, 5.0, 10.0], help="SNRs in dB (default 0 5 10)")
    parser.add_argument("--seed", type=SEED, default=0)
    parser.add_argument("--ref-seconds", type=Number(float, low=0, low_open=True, high=600), default=1.0, help="noise reference length (default 1.0 s)")
    parser.add_argument("--num-items", type=COUNT, default=None,
                        help="items per SNR (default: one per clean file; more cycle over the files)")
    parser.add_argument("--min-speech-seconds", type=Number(float, low=0, high=600), default=0.5, help="shorter clean files are skipped")
    parser.add_argument("--sample-rate", type=AUDIO_RATE, default=SAMPLE_RATE,
                        help=f"rate of the set in Hz (default {SAMPLE_RATE}); noise of any rate is resampled to it, "
                             f"clean speech must be at it or above")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
