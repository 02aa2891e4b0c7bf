"""Non-stationary noise test sets: clean test speech + noise that changes within the utterance, at fixed
SNRs, the kinds balanced over the items (layout and guarantees: sgmse_nc.data.prepare.snr_sets).

    python -m sgmse_nc.data.prepare nonstationary --clean <vbdmd>/test/clean --out <root>/nonstationary \\
        --noise <DEMAND> --snrs 0 5 10 --seed 0 [--sample-rate 48000]

Noise folders of any rate are resampled to the set's rate (--sample-rate, default 16 kHz); synthetic noise is
made at it.
"""
from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np

from sgmse_nc.audio import SAMPLE_RATE
from sgmse_nc.cli import Number
from sgmse_nc.data.augment import ConcatSource, EventSource, SyntheticSource, VaryingGainSource
from sgmse_nc.data.errors import BuildError
from sgmse_nc.data.noise_pool import AudioPool
from sgmse_nc.data.noise_source import NoisePair, PoolSource
from sgmse_nc.data.honesty import ReferencePolicy
from sgmse_nc.data.prepare.snr_sets import (FORMAT_VERSION, SNR_SET_COLUMNS, Item, add_snr_set_arguments, balanced,
                                    canonical, claim_output, finish, format_summary, honest_pair, policy_notes,
                                    progress_bar, render, speech_items, speech_pool)
from sgmse_nc.data.synthetic import NOISES

COLUMNS = ("id", "kind") + SNR_SET_COLUMNS[1:] + ("detail",)
KINDS = ("concat", "varying_snr", "events")
DEFAULT_SYNTHETIC = ("white", "pink", "brown", "hum")


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
            pair = VaryingGainSource(self.types[name], self.sample_rate).draw(length, ref_length, rng)
            pair.category = name
            return pair, pair.info["gain"]
        if kind == "events":
            background_name, event_name = self.pick(rng, 2)
            source = EventSource(self.types[background_name], self.types[event_name], self.sample_rate)
            pair = source.draw(length, ref_length, rng)
            pair.category = f"{background_name}+{event_name}"
            return pair, pair.info["events"]
        raise BuildError(f"unknown non-stationary kind {kind!r}; choose from {', '.join(KINDS)}.")


def noise_types(noise_dirs: list[Path], labels: str | None, trim_silence: bool, synthetic: list[str],
                reference: str, sample_rate: int = SAMPLE_RATE) -> tuple[dict, dict, list[AudioPool]]:
    """Named noise types: each synthetic type, and each class of each pool (or each pool without labels);
    and the same types as the policy's fallback draws them: pool classes with two recordings or more take the
    reference from another recording of the class (the others draw again: another recording, another stretch)."""
    types, fallback, pools = {}, {}, []
    for kind in synthetic:
        if kind not in NOISES:
            raise BuildError(f"unknown synthetic noise {kind!r}; choose from {', '.join(NOISES)}.")
        types[f"synthetic:{kind}"] = fallback[f"synthetic:{kind}"] = SyntheticSource(kind, sample_rate)
    for folder in noise_dirs:
        if not folder.is_dir():
            raise BuildError(f"{folder}: noise folder not found. Check --noise.")
        pool = AudioPool(folder, sample_rate, labels=labels, trim_silence=trim_silence, min_seconds=0.1,
                         name=folder.name)
        pools.append(pool)
        if pool.by_label:
            for label in pool.by_label:
                name = f"{pool.name}/{label}"
                types[name] = PoolSource(pool, reference=reference, label=label, warn_overlap=False)
                fallback[name] = (PoolSource(pool, reference="same_class", label=label)
                                  if len(pool.label_files(label)) > 1 else types[name])
        else:
            types[pool.name] = fallback[pool.name] = PoolSource(pool, reference="same_recording", warn_overlap=False)
    return types, fallback, pools


def build_nonstationary(clean, out, noise_dirs=(), noise_labels: str | None = "subfolder", trim_silence: bool = False,
                        synthetic: list[str] | None = None, kinds=KINDS, snrs=(0, 5, 10), seed: int = 0,
                        reference: str = "same_recording", ref_seconds: float = 1.0, crossfade_seconds: float = 0.05,
                        num_items: int | None = None, min_speech_seconds: float = 0.5, progress: bool = True,
                        sample_rate: int = SAMPLE_RATE) -> dict:
    """Clean speech + noise that changes within the utterance; the kinds are balanced over the items.

    concat       2-3 different noise types in a row, equal RMS, crossfaded
    varying_snr  one noise type under a slow gain ramp or sinusoid (6-12 dB peak to peak)
    events       sudden short events of one type 6-18 dB over a background of another type
    Noise types: `synthetic` types (default white, pink, brown, hum when no noise folder is given) and every
    class of every `noise_dirs` pool (classes from `noise_labels`: "subfolder", None or a csv).
    sample_rate: the rate of the written set; noise folders are resampled to it, clean speech below it is refused.
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
                        "min_speech_seconds": min_speech_seconds, "sample_rate": sample_rate})
    speech = speech_pool(clean, min_speech_seconds, sample_rate)
    types, fallback_types, pools = noise_types(noise_dirs, noise_labels, trim_silence, synthetic, reference,
                                               sample_rate)
    if len(types) < 2 and {"concat", "events"} & set(kinds):
        raise BuildError(f"kinds concat and events need at least 2 noise types, found {list(types) or 'none'}. "
                         f"Add --synthetic types or a --noise folder with classes (sub-folders).")
    if not types:
        raise BuildError("no noise type: give --noise folders and/or --synthetic types.")
    done = claim_output(out, params)
    if done is not None:
        return {**done, "already_built": True}

    ref_len = int(round(ref_seconds * sample_rate))
    maker = NonStationary(types, int(round(crossfade_seconds * sample_rate)), sample_rate)
    other_recording = NonStationary(fallback_types, maker.crossfade, sample_rate)
    fix = ("Give longer noise recordings, more recordings per class"
           + (" (--reference same_class), " if reference == "same_recording" else ", ") + "or more --synthetic types")
    count = num_items or len(speech)
    plan = balanced(kinds, count, seed)
    skipped, policy = Counter(), ReferencePolicy(null_option="")  # a test set has no null option

    def items():
        for k, item_id, wav, rng in speech_items(speech, count, seed, skipped):
            def draw(source=maker):
                pair, detail = source.draw(plan[k], wav.shape[-1], ref_len, rng)
                pair.info["detail"] = detail
                return pair
            # the policy's order: another stretch (draw again), then another recording of the class
            pair, xcorr = honest_pair(policy, draw, f"{item_id} ({plan[k]})", lambda: draw(other_recording), fix)
            yield Item(f"{item_id}_{plan[k]}", wav, pair, speech.files[k % len(speech)].name,
                       {"kind": plan[k], "category": pair.category}, {"detail": pair.info["detail"]}, xcorr)

    rows_by_snr = render(out, progress_bar(items(), count, progress, "nonstationary"), snrs, sample_rate)
    notes = {"noise_types": len(types), "skipped_speech": sum(speech.skipped.values()) + len(skipped),
             "skipped_noise": sum(sum(p.skipped.values()) for p in pools), **policy_notes(policy)}
    summary = finish(out, "nonstationary", params, rows_by_snr, COLUMNS, "kind", notes)
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_snr_set_arguments(parser)
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
    parser.add_argument("--crossfade-seconds", type=Number(float, low=0, high=10), default=0.05)


def run(args: argparse.Namespace) -> dict:
    labels = None if args.noise_labels == "none" else args.noise_labels
    summary = build_nonstationary(args.clean, args.out, args.noise, labels, args.trim_silence, args.synthetic,
                                  args.kinds, args.snrs, args.seed, args.reference, args.ref_seconds,
                                  args.crossfade_seconds, args.num_items, args.min_speech_seconds,
                                  progress=not args.no_progress, sample_rate=args.sample_rate)
    print(format_summary(summary))
    return summary
