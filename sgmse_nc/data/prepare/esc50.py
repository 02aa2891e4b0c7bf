"""ESC-50 out-of-distribution test sets: clean test speech + ESC-50 clips at fixed SNRs, the categories
balanced over the items (layout and guarantees: sgmse_nc.data.prepare.snr_sets).

    python -m sgmse_nc.data.prepare esc50 --esc50 <ESC-50-master> --clean <vbdmd>/test/clean \\
        --out <root>/esc50_ood --snrs 0 5 10 --seed 0 [--sample-rate 48000]

ESC-50's 44.1 kHz clips are resampled to the set's rate (--sample-rate, default 16 kHz).
"""
from __future__ import annotations

import argparse
import csv
from collections import Counter
from pathlib import Path

from sgmse_nc.audio import SAMPLE_RATE
from sgmse_nc.cli import Number
from sgmse_nc.data.errors import BuildError
from sgmse_nc.data.noise_pool import AudioPool
from sgmse_nc.data.noise_source import PoolSource
from sgmse_nc.data.honesty import ReferencePolicy
from sgmse_nc.data.prepare.snr_sets import (FORMAT_VERSION, SNR_SET_COLUMNS, Item, add_snr_set_arguments, balanced,
                                    canonical, claim_output, finish, format_summary, honest_pair, policy_notes,
                                    progress_bar, render, speech_items, speech_pool)


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
                progress: bool = True, sample_rate: int = SAMPLE_RATE) -> dict:
    """Clean speech + ESC-50 clips at each SNR; categories balanced over the items.

    reference: "other_clip" (another clip of the same category, level-matched) or "same_clip" (a stretch of
    the same clip outside the mixed one; when the clip's active part is too short for that, or its stretches
    are near-copies of the mixed one (a looped event), another clip of the category is used and counted as
    `same_clip_fallbacks`).
    sample_rate: the rate of the written set; the clips are resampled to it, clean speech below it is refused.
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
                        "min_speech_seconds": min_speech_seconds, "sample_rate": sample_rate})
    speech = speech_pool(clean, min_speech_seconds, sample_rate)  # before claiming: bad input leaves no folder behind
    pool = AudioPool(esc50 / "audio", sample_rate, files=[esc50 / "audio" / r["filename"] for r in rows],
                     labels=str(esc50 / "meta" / "esc50.csv"), trim_silence=True, min_seconds=0.05, name="ESC-50")
    done = claim_output(out, params)
    if done is not None:
        return {**done, "already_built": True}

    ref_len = int(round(ref_seconds * sample_rate))
    other = {c: PoolSource(pool, reference="same_class", label=c) for c in pool.by_label}
    same = {c: PoolSource(pool, reference="same_recording", label=c, warn_overlap=False) for c in pool.by_label}
    count = num_items or len(speech)
    plan = balanced(sorted(pool.by_label), count, seed)
    skipped, policy = Counter(), ReferencePolicy(null_option="")  # a test set has no null option
    relations = Counter()

    def items():
        for k, item_id, wav, rng in speech_items(speech, count, seed, skipped):
            category = plan[k]
            primary = same if reference == "same_clip" else other

            def draw(source=primary[category]):
                return source.draw(wav.shape[-1], ref_len, rng)
            fallback = (lambda: draw(other[category])) if reference == "same_clip" else None
            pair, xcorr = honest_pair(policy, draw, f"{item_id} ({category})", fallback,
                                      fix="Give longer clips or more clips per category"
                                          + (" (--reference other_clip)" if reference == "same_clip" else ""))
            relations[pair.relation] += 1
            yield Item(f"{item_id}_{category}", wav, pair, speech.files[k % len(speech)].name,
                       {"category": category}, {}, xcorr)

    rows_by_snr = render(out, progress_bar(items(), count, progress, "esc50"), snrs, sample_rate)
    notes = {"reference": reference, "noise_clips": len(pool), "skipped_speech": sum(speech.skipped.values())
             + len(skipped), "skipped_noise": sum(pool.skipped.values()), **policy_notes(policy)}
    other_clip = relations["same_class_other_recording"]
    if reference == "same_clip":
        notes["same_clip_fallbacks"] = other_clip  # same clip too short or only near-copies: another clip
    elif sum(relations.values()) - other_clip:
        notes["same_clip_references_single_clip_category"] = sum(relations.values()) - other_clip
    return finish(out, "esc50", params, rows_by_snr, SNR_SET_COLUMNS, "category", notes)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--esc50", required=True, type=Path, help="ESC-50 folder with audio/ and meta/esc50.csv")
    add_snr_set_arguments(parser)
    parser.add_argument("--categories", nargs="+", default=None, help="ESC-50 categories (default all 50)")
    parser.add_argument("--folds", nargs="+", type=Number(int, low=1, high=5), default=None, help="ESC-50 folds 1-5 (default all)")
    parser.add_argument("--reference", choices=("other_clip", "same_clip"), default="other_clip",
                        help="reference from another clip of the category (default) or elsewhere in the same clip")


def run(args: argparse.Namespace) -> dict:
    summary = build_esc50(args.esc50, args.clean, args.out, args.snrs, args.categories, args.folds, args.seed,
                          args.reference, args.ref_seconds, args.num_items, args.min_speech_seconds,
                          progress=not args.no_progress, sample_rate=args.sample_rate)
    print(format_summary(summary))
    return summary
