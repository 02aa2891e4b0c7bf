"""Test-set builders: clean test speech mixed with ESC-50 noise (out of distribution) or with noise that
changes within the utterance (non-stationary).

    python -m sgmse_nc.data.prepare esc50 --esc50 <ESC-50-master> --clean <vbdmd>/test/clean \\
        --out <root>/esc50_ood --snrs 0 5 10 --seed 0
    python -m sgmse_nc.data.prepare nonstationary --clean <vbdmd>/test/clean --out <root>/nonstationary \\
        --noise <DEMAND> --snrs 0 5 10 --seed 0

Both write, for every SNR k, `<out>/snr_<k>/{clean,noisy,noise_ref}/<id>.wav` (16 kHz, PCM 16) and
`<out>/snr_<k>/manifest.csv`; each `snr_<k>` folder is a paired subset (PairedFolderDataset(root=<out>,
subset="snr_5")) whose `noise_ref/` serves the `file` reference strategy. An utterance gets the same noise
and reference at every SNR; only the gain differs. Manifest columns: id, (kind), category, snr,
speech_file, noise_file, noise_offset, reference_file, reference_offset (offsets in samples at 16 kHz
inside the source file; composite noises join their parts with ';'), achieved_snr (dB: speech power over
the power of the ACTIVE noise frames, measured after level handling), (detail).

Builds are deterministic for a seed (every item draws from a generator seeded by (seed, item)), atomic
(each file is written to a temporary name, then renamed), resumable (`PARAMS.json` while running;
finished files are kept) and idempotent (`DONE.json` holds the parameters: the same command again only
prints the summary, different parameters on an existing folder are refused and nothing is overwritten).
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
from tqdm import tqdm

from sgmse_nc.audio import SAMPLE_RATE, AudioError, rms, write_audio
from sgmse_nc.data.augment import ConcatSource, SyntheticSource
from sgmse_nc.data.manifest import write_manifest, write_text_atomic
from sgmse_nc.data.mixing import SILENT_RMS, mix_at_snr
from sgmse_nc.data.noise_pool import AudioPool, NoisePair, PoolSource
from sgmse_nc.data.prepare import PrepareError, Subcommand
from sgmse_nc.data.synthetic import NOISES

log = logging.getLogger(__name__)

PARAMS_FILE, DONE_FILE = "PARAMS.json", "DONE.json"
FORMAT_VERSION = 1
ESC50_COLUMNS = ("id", "category", "snr", "speech_file", "noise_file", "noise_offset", "reference_file",
                 "reference_offset", "achieved_snr")
NONSTATIONARY_COLUMNS = ("id", "kind") + ESC50_COLUMNS[1:] + ("detail",)
KINDS = ("concat", "varying_snr", "events")
DEFAULT_SYNTHETIC = ("white", "pink", "brown", "hum")


class BuildError(PrepareError):
    """A problem with a builder's inputs or output folder; the message names it and the fix."""


# ------------------------------------------------------------------------------------- output folder

def snr_folder(snr: float) -> str:
    return f"snr_{snr:g}"


def _read_marker(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise BuildError(f"{path}: unreadable marker ({err}). Delete {path.parent} to rebuild it.") from err


def claim_output(out: Path, params: dict) -> dict | None:
    """Make `out` ours for a build with `params`; return the finished summary when it is already built.

    A folder built or being built with other parameters, or a non-empty folder no builder wrote, is refused
    before anything is written.
    """
    for name in (DONE_FILE, PARAMS_FILE):
        marker = out / name
        if marker.is_file():
            old = _read_marker(marker)
            if old.get("params") != params:
                before = old.get("params", {})
                changed = sorted(k for k in before.keys() | params.keys() if before.get(k) != params.get(k))
                details = "; ".join(f"{k}: {before.get(k)!r} -> {params.get(k)!r}" for k in changed)
                raise BuildError(f"{out} was {'built' if name == DONE_FILE else 'started'} with other parameters "
                                 f"({details}). Nothing was written. Use another --out, or delete {out} to rebuild.")
            return old.get("summary", {}) if name == DONE_FILE else None
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BuildError(f"{out}: exists and holds no {DONE_FILE}/{PARAMS_FILE} of a builder. Nothing was written. "
                         f"Give an empty or new --out folder.")
    write_text_atomic(out / PARAMS_FILE, json.dumps({"params": params}, indent=2, sort_keys=True))
    return None


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


def speech_id(name: str) -> str:
    return Path(name).with_suffix("").as_posix().replace("/", "_")


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
    lines = [f"{summary['builder']}: {summary['items']} items per SNR in {summary['out']}"]
    for folder, stats in summary["per_snr"].items():
        lines.append(f"  {folder}: {stats['count']} items, mean achieved SNR {stats['mean_achieved_snr']} dB")
    for key, value in summary.items():
        if key.startswith("per_") and key != "per_snr":
            lines.append(f"  {key[4:]}: " + ", ".join(f"{k} {v}" for k, v in value.items()))
    for key, value in summary.items():
        if key not in ("builder", "items", "out", "per_snr") and not key.startswith("per_"):
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


def _speech_pool(clean: Path, min_seconds: float) -> AudioPool:
    if not clean.is_dir():
        raise BuildError(f"{clean}: clean speech folder not found. Give --clean <vbdmd root>/test/clean.")
    return AudioPool(clean, min_seconds=min_seconds, name="clean speech")


def _progress(iterable, total: int, enabled: bool, desc: str):
    return tqdm(iterable, total=total, desc=desc, disable=not enabled, unit="item")


# --------------------------------------------------------------------------------------------- ESC-50

def read_esc50_meta(esc50: Path, categories: list[str] | None, folds: list[int] | None) -> list[dict]:
    """Rows of `meta/esc50.csv` in the chosen categories and folds (all by default)."""
    audio_dir, meta = esc50 / "audio", esc50 / "meta" / "esc50.csv"
    for path in (audio_dir, meta):
        if not path.exists():
            raise BuildError(f"{path}: not found. --esc50 must be the ESC-50 folder holding audio/ and "
                             f"meta/esc50.csv (e.g. ESC-50-master from github.com/karolpiczak/ESC-50).")
    with meta.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in ("filename", "fold", "category") if c not in (reader.fieldnames or [])]
        if missing:
            raise BuildError(f"{meta}: missing column(s) {', '.join(missing)}; the ESC-50 csv has "
                             f"filename,fold,target,category,esc10,src_file,take.")
        rows = list(reader)
    available = sorted({r["category"] for r in rows})
    if categories:
        unknown = sorted(set(categories) - set(available))
        if unknown:
            raise BuildError(f"{meta}: unknown categor{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}. "
                             f"Available: {', '.join(available)}.")
        rows = [r for r in rows if r["category"] in set(categories)]
    if folds:
        rows = [r for r in rows if int(r["fold"]) in set(folds)]
    if not rows:
        raise BuildError(f"{meta}: no clip in categories {categories or 'all'} and folds {folds or 'all'}.")
    return rows


def build_esc50(esc50, clean, out, snrs=(0, 5, 10), categories: list[str] | None = None,
                folds: list[int] | None = None, seed: int = 0, reference: str = "other_clip",
                ref_seconds: float = 1.0, num_items: int | None = None, min_speech_seconds: float = 0.5,
                progress: bool = True) -> dict:
    """Clean speech + ESC-50 clips at each SNR; categories balanced over the items.

    reference: "other_clip" (another clip of the same category, level-matched) or "same_clip" (a stretch of
    the same clip outside the mixed one; when the clip's active part is too short for that, another clip of
    the category is used and counted as `same_clip_fallbacks`).
    """
    if reference not in ("other_clip", "same_clip"):
        raise BuildError(f"--reference must be other_clip or same_clip, not {reference!r}.")
    esc50, clean, out = Path(esc50), Path(clean), Path(out)
    rows = read_esc50_meta(esc50, categories, folds)
    snrs = [float(s) for s in snrs]
    params = canonical({"builder": "esc50", "format": FORMAT_VERSION, "esc50": esc50, "clean": clean,
                        "snrs": snrs, "categories": sorted(categories) if categories else None,
                        "folds": sorted(folds) if folds else None, "seed": seed, "reference": reference,
                        "ref_seconds": ref_seconds, "num_items": num_items,
                        "min_speech_seconds": min_speech_seconds})
    speech = _speech_pool(clean, min_speech_seconds)  # before claiming: bad input leaves no folder behind
    pool = AudioPool(esc50 / "audio", files=[esc50 / "audio" / r["filename"] for r in rows],
                     labels=str(esc50 / "meta" / "esc50.csv"), trim_silence=True, min_seconds=0.05, name="ESC-50")
    done = claim_output(out, params)
    if done is not None:
        return {**done, "already_built": True}

    ref_len = int(round(ref_seconds * SAMPLE_RATE))
    other = {c: PoolSource(pool, reference="same_class", label=c) for c in pool.by_label}
    same = {c: PoolSource(pool, reference="same_recording", label=c, warn_overlap=False) for c in pool.by_label}
    count = num_items or len(speech)
    plan = balanced(sorted(pool.by_label), count, seed)
    skipped, fallbacks = Counter(), 0

    def items():
        nonlocal fallbacks
        for k, item_id, wav, rng in speech_items(speech, count, seed, skipped):
            category = plan[k]
            pair = (same if reference == "same_clip" else other)[category].draw(wav.shape[-1], ref_len, rng)
            if pair.overlapping or (reference == "other_clip" and pair.reference_file == pair.noise_file):
                fallbacks += 1  # same clip too short, or a category with a single clip
                if reference == "same_clip":
                    pair = other[category].draw(wav.shape[-1], ref_len, rng)
            yield Item(f"{item_id}_{category}", wav, pair, speech.files[k % len(speech)].name,
                       {"category": category}, {})

    rows_by_snr = render(out, _progress(items(), count, progress, "esc50"), snrs)
    notes = {"reference": reference, "noise_clips": len(pool), "skipped_speech": sum(speech.skipped.values())
             + len(skipped), "skipped_noise": sum(pool.skipped.values())}
    if reference == "same_clip":
        notes["same_clip_fallbacks"] = fallbacks
    elif fallbacks:
        notes["same_clip_references_single_clip_category"] = fallbacks
    return finish(out, "esc50", params, rows_by_snr, ESC50_COLUMNS, "category", notes)


# -------------------------------------------------------------------------------------- non-stationary

def gain_envelope(length: int, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> tuple[torch.Tensor, str]:
    """A slow gain curve (linear factor [length]) and its description: a ramp or a sinusoid in dB with a
    peak-to-peak depth of 6-12 dB."""
    depth = float(rng.uniform(6.0, 12.0))
    t = torch.arange(length, dtype=torch.float64) / sample_rate
    if rng.random() < 0.5:
        direction = 1.0 if rng.random() < 0.5 else -1.0
        db = direction * depth * (torch.linspace(-0.5, 0.5, length, dtype=torch.float64))
        detail = f"ramp {direction * depth:+.1f} dB"
    else:
        freq, phase = float(rng.uniform(0.2, 0.6)), float(rng.uniform(0, 2 * np.pi))
        db = 0.5 * depth * torch.sin(2 * np.pi * freq * t + phase)
        detail = f"sine {freq:.2f} Hz {depth:.1f} dB"
    return (10 ** (db / 20)).float(), detail


def event_envelope(length: int, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Sudden onset (5 ms attack), 30 ms release: an event that starts abruptly without a click."""
    attack, release = min(int(0.005 * sample_rate), length // 2), min(int(0.03 * sample_rate), length // 2)
    env = torch.ones(length)
    env[:attack] = torch.linspace(0, 1, attack)
    env[length - release:] = torch.linspace(1, 0, release)
    return env


def add_events(background: torch.Tensor, source, count: int, rng: np.random.Generator,
               sample_rate: int = SAMPLE_RATE) -> tuple[torch.Tensor, list[NoisePair], list[int], list[float]]:
    """Add `count` short events (0.15-0.6 s stretches of `source`) at random times, each 6-18 dB above the
    background RMS. Returns the noise, the events' pairs (their references are other events of the
    source), their positions and their event-to-background ratios."""
    noise, pairs, positions, ratios = background.clone(), [], [], []
    level = rms(background)
    for _ in range(count):
        n = min(int(rng.uniform(0.15, 0.6) * sample_rate), background.shape[-1])
        pair = source.draw(n, n, rng)
        ratio = float(rng.uniform(6.0, 18.0))
        at = int(rng.integers(0, background.shape[-1] - n + 1))
        gain = level * 10 ** (ratio / 20) / rms(pair.noise).clamp_min(1e-8)
        noise[at:at + n] += gain * pair.noise * event_envelope(n, sample_rate)
        pair.reference = pair.reference * gain  # same level as the event it stands for
        pairs.append(pair)
        positions.append(at)
        ratios.append(ratio)
    return noise, pairs, positions, ratios


class NonStationary:
    """Draws the noise pair of one non-stationary item from a list of named noise types."""

    def __init__(self, types: dict, crossfade: int, sample_rate: int = SAMPLE_RATE):
        self.types, self.names, self.crossfade, self.sample_rate = types, sorted(types), crossfade, sample_rate

    def pick(self, rng: np.random.Generator, count: int) -> list[str]:
        return [self.names[int(j)] for j in rng.choice(len(self.names), size=count, replace=False)]

    def draw(self, kind: str, length: int, ref_length: int, rng: np.random.Generator) -> tuple[NoisePair, str]:
        if kind == "concat":
            names = self.pick(rng, int(rng.integers(2, min(3, len(self.names)) + 1)))
            pair = ConcatSource([self.types[n] for n in names], crossfade=self.crossfade).draw(length, ref_length, rng)
            pair.category = ">".join(names)
            return pair, "segments " + "/".join(f"{n / self.sample_rate:.2f}s" for n in pair.info["segment_lengths"])
        if kind == "varying_snr":
            (name,) = self.pick(rng, 1)
            pair = self.types[name].draw(length, ref_length, rng)
            envelope, detail = gain_envelope(length, rng, self.sample_rate)
            steady = pair.noise
            pair.noise = steady * envelope
            # The reference carries the utterance's average noise level, without the modulation.
            pair.reference = pair.reference * (rms(pair.noise) / rms(steady).clamp_min(1e-8))
            pair.category = name
            return pair, detail
        if kind == "events":
            background_name, event_name = self.pick(rng, 2)
            pair = self.types[background_name].draw(length, ref_length, rng)
            count = 1 + int(rng.poisson(0.5 * length / self.sample_rate))
            pair.noise, events, positions, ratios = add_events(pair.noise, self.types[event_name], count, rng,
                                                               self.sample_rate)
            # Reference: its own background stretch with one other event of the same type at the same ratio.
            event = events[0]
            n = min(event.reference.shape[-1], ref_length // 2)
            at = int(rng.integers(0, ref_length - n + 1))
            reference = pair.reference.clone()
            reference[at:at + n] += event.reference[:n] * event_envelope(n, self.sample_rate)
            pair.reference = reference
            pair.category = f"{background_name}+{event_name}"
            pair.noise_file = ";".join([pair.noise_file] + [e.noise_file for e in events])
            pair.noise_offset = ";".join([pair.noise_offset] + [e.noise_offset for e in events])
            pair.reference_file = ";".join([pair.reference_file, event.reference_file])
            pair.reference_offset = ";".join([pair.reference_offset, event.reference_offset])
            detail = f"{count} events at " + "/".join(f"{p / self.sample_rate:.2f}s" for p in positions) + \
                " ratio " + "/".join(f"{r:.1f}dB" for r in ratios)
            return pair, detail
        raise BuildError(f"unknown non-stationary kind {kind!r}; choose from {', '.join(KINDS)}.")


def noise_types(noise_dirs: list[Path], labels: str | None, trim_silence: bool, synthetic: list[str],
                reference: str) -> tuple[dict, list[AudioPool]]:
    """Named noise types: each synthetic type, and each class of each pool (or each pool without labels)."""
    types, pools = {}, []
    for kind in synthetic:
        if kind not in NOISES:
            raise BuildError(f"unknown synthetic noise {kind!r}; choose from {', '.join(NOISES)}.")
        types[f"synthetic:{kind}"] = SyntheticSource(kind)
    for folder in noise_dirs:
        if not folder.is_dir():
            raise BuildError(f"{folder}: noise folder not found. Check --noise.")
        pool = AudioPool(folder, labels=labels, trim_silence=trim_silence, min_seconds=0.1, name=folder.name)
        pools.append(pool)
        if pool.by_label:
            for label in pool.by_label:
                types[f"{pool.name}/{label}"] = PoolSource(pool, reference=reference, label=label)
        else:
            types[pool.name] = PoolSource(pool, reference="same_recording")
    return types, pools


def build_nonstationary(clean, out, noise_dirs=(), noise_labels: str | None = "subfolder", trim_silence: bool = False,
                        synthetic: list[str] | None = None, kinds=KINDS, snrs=(0, 5, 10), seed: int = 0,
                        reference: str = "same_recording", ref_seconds: float = 1.0, crossfade_seconds: float = 0.05,
                        num_items: int | None = None, min_speech_seconds: float = 0.5, progress: bool = True) -> dict:
    """Clean speech + noise that changes within the utterance; the kinds are balanced over the items.

    concat       2-3 different noise types in a row, equal RMS, crossfaded
    varying_snr  one noise type under a slow gain ramp or sinusoid (6-12 dB peak to peak)
    events       sudden short events of one type 6-18 dB over a background of another type
    Noise types: `synthetic` types (default white, pink, brown, hum when no noise folder is given) and every
    class of every `noise_dirs` pool (classes from `noise_labels`: "subfolder", None or a csv).
    """
    clean, out = Path(clean), Path(out)
    noise_dirs = [Path(d) for d in noise_dirs]
    synthetic = list(DEFAULT_SYNTHETIC if synthetic is None and not noise_dirs else synthetic or [])
    kinds = list(kinds)
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or not kinds:
        raise BuildError(f"unknown or no kinds {unknown or kinds}; choose from {', '.join(KINDS)}.")
    snrs = [float(s) for s in snrs]
    params = canonical({"builder": "nonstationary", "format": FORMAT_VERSION, "clean": clean,
                        "noise_dirs": noise_dirs, "noise_labels": noise_labels, "trim_silence": trim_silence,
                        "synthetic": synthetic, "kinds": kinds, "snrs": snrs, "seed": seed, "reference": reference,
                        "ref_seconds": ref_seconds, "crossfade_seconds": crossfade_seconds, "num_items": num_items,
                        "min_speech_seconds": min_speech_seconds})
    speech = _speech_pool(clean, min_speech_seconds)
    types, pools = noise_types(noise_dirs, noise_labels, trim_silence, synthetic, reference)
    if len(types) < 2 and {"concat", "events"} & set(kinds):
        raise BuildError(f"kinds concat and events need at least 2 noise types, found {list(types) or 'none'}. "
                         f"Add --synthetic types or a --noise folder with classes (sub-folders).")
    if not types:
        raise BuildError("no noise type: give --noise folders and/or --synthetic types.")
    done = claim_output(out, params)
    if done is not None:
        return {**done, "already_built": True}

    ref_len = int(round(ref_seconds * SAMPLE_RATE))
    maker = NonStationary(types, int(round(crossfade_seconds * SAMPLE_RATE)))
    count = num_items or len(speech)
    plan = balanced(kinds, count, seed)
    skipped = Counter()

    def items():
        for k, item_id, wav, rng in speech_items(speech, count, seed, skipped):
            pair, detail = maker.draw(plan[k], wav.shape[-1], ref_len, rng)
            yield Item(f"{item_id}_{plan[k]}", wav, pair, speech.files[k % len(speech)].name,
                       {"kind": plan[k], "category": pair.category}, {"detail": detail})

    rows_by_snr = render(out, _progress(items(), count, progress, "nonstationary"), snrs)
    overlapping = sum(s.overlapping_references for s in types.values() if isinstance(s, PoolSource))
    notes = {"noise_types": len(types), "skipped_speech": sum(speech.skipped.values()) + len(skipped),
             "skipped_noise": sum(sum(p.skipped.values()) for p in pools), "overlapping_references": overlapping}
    summary = finish(out, "nonstationary", params, rows_by_snr, NONSTATIONARY_COLUMNS, "kind", notes)
    return summary


# ------------------------------------------------------------------------------------------------ CLI

def _common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clean", required=True, type=Path,
                        help="folder of clean test speech (e.g. <vbdmd>/test/clean)")
    parser.add_argument("--out", required=True, type=Path, help="output folder (new, empty, or a previous run)")
    parser.add_argument("--snrs", nargs="+", type=float, default=[0.0, 5.0, 10.0], help="SNRs in dB (default 0 5 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ref-seconds", type=float, default=1.0, help="noise reference length (default 1.0 s)")
    parser.add_argument("--num-items", type=int, default=None,
                        help="items per SNR (default: one per clean file; more cycle over the files)")
    parser.add_argument("--min-speech-seconds", type=float, default=0.5, help="shorter clean files are skipped")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_esc50_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--esc50", required=True, type=Path, help="ESC-50 folder with audio/ and meta/esc50.csv")
    _common_arguments(parser)
    parser.add_argument("--categories", nargs="+", default=None, help="ESC-50 categories (default all 50)")
    parser.add_argument("--folds", nargs="+", type=int, default=None, help="ESC-50 folds 1-5 (default all)")
    parser.add_argument("--reference", choices=("other_clip", "same_clip"), default="other_clip",
                        help="reference from another clip of the category (default) or elsewhere in the same clip")


def run_esc50(args: argparse.Namespace) -> dict:
    summary = build_esc50(args.esc50, args.clean, args.out, args.snrs, args.categories, args.folds, args.seed,
                          args.reference, args.ref_seconds, args.num_items, args.min_speech_seconds,
                          progress=not args.no_progress)
    print(format_summary(summary))
    return summary


def add_nonstationary_arguments(parser: argparse.ArgumentParser) -> None:
    _common_arguments(parser)
    parser.add_argument("--noise", nargs="*", type=Path, default=[], help="noise folders (e.g. DEMAND, ESC-50/audio)")
    parser.add_argument("--noise-labels", default="subfolder",
                        help="classes of the noise folders: subfolder (default), none, or a csv (e.g. esc50.csv)")
    parser.add_argument("--trim-silence", action="store_true", help="draw noise from active spans (ESC-50-like clips)")
    parser.add_argument("--synthetic", nargs="*", default=None,
                        help=f"synthetic noise types ({', '.join(NOISES)}); default {' '.join(DEFAULT_SYNTHETIC)} "
                             f"when no --noise folder is given, else none")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--reference", choices=PoolSource.REFERENCES, default="same_recording",
                        help="reference for pool noise: another stretch of the recording (default) or another clip "
                             "of the class")
    parser.add_argument("--crossfade-seconds", type=float, default=0.05)


def run_nonstationary(args: argparse.Namespace) -> dict:
    labels = None if args.noise_labels == "none" else args.noise_labels
    summary = build_nonstationary(args.clean, args.out, args.noise, labels, args.trim_silence, args.synthetic,
                                  args.kinds, args.snrs, args.seed, args.reference, args.ref_seconds,
                                  args.crossfade_seconds, args.num_items, args.min_speech_seconds,
                                  progress=not args.no_progress)
    print(format_summary(summary))
    return summary


SUBCOMMANDS: dict[str, Subcommand] = {
    "esc50": Subcommand("ESC-50 out-of-distribution test sets (clean test speech + ESC-50 clips)",
                        add_esc50_arguments, run_esc50),
    "nonstationary": Subcommand("non-stationary noise test sets (concatenated types, varying SNR, events)",
                                add_nonstationary_arguments, run_nonstationary),
}


if __name__ == "__main__":  # same CLI as `python -m sgmse_nc.data.prepare`, which lists these subcommands too
    from sgmse_nc.data.prepare import main

    sys.exit(main())
