"""Reference policy figures: the cost of the near-copy measure per reference, and what it finds on the demo
corpus and on synthetic stand-ins of the leaks of issue 6.

    nice -n 10 python bench/reference_honesty.py [--demo-dir /tmp/demo_bench] [--repeats 20]

Prints milliseconds per `similarity` call (one reference against the mixed noise, both whitened and raw),
the whitened/raw similarity of the demo corpus's noise_ref files to their mixed noise, and the counts the
datasets and builders report on looped-event stand-ins.
"""
from __future__ import annotations

import argparse
import csv
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from sgmse_nc.audio import read_audio, write_audio
from sgmse_nc.data.prepare.demo import ensure_demo_corpus
from sgmse_nc.data.honesty import similarity
from sgmse_nc.data.mixing import MixingDataset
from sgmse_nc.data.paired import PairedFolderDataset
from sgmse_nc.data.synthetic import make_noise, speech_like

SR = 16000


def cost(repeats: int) -> None:
    rng = np.random.default_rng(0)
    print("similarity() cost per reference (white noise, 1 thread):")
    for ref_s, noise_s in ((0.25, 0.5), (0.25, 2.0), (0.25, 4.0), (1.0, 4.0), (2.0, 10.0)):
        ref, noise = rng.standard_normal(int(ref_s * SR)), rng.standard_normal(int(noise_s * SR))
        similarity(ref, noise)
        start = time.perf_counter()
        for _ in range(repeats):
            similarity(ref, noise)
        print(f"  reference {ref_s:4.2f} s vs noise {noise_s:4.1f} s: "
              f"{(time.perf_counter() - start) / repeats * 1e3:7.1f} ms")


def count(dataset) -> dict:
    """What the batches of `dataset` say about their references."""
    counts = Counter()
    for i in range(len(dataset)):
        ex = dataset[i]
        counts["examples"] += 1
        counts["rejected_copy"] += int(ex["ref_rejected_copy"])
        counts["rejected_overlap"] += int(ex["ref_rejected_overlap"])
        counts["null"] += int(ex["ref_null"])
        counts["examples_with_a_rejection"] += int(ex["ref_rejected_copy"] + ex["ref_rejected_overlap"] > 0)
        if not ex["ref_null"]:
            counts["max_xcorr_x1000"] = max(counts["max_xcorr_x1000"], int(1000 * float(ex["ref_xcorr"])))
    return dict(counts)


def demo(root: Path) -> None:
    corpus = ensure_demo_corpus(root)
    print(f"demo corpus {corpus}: noise_ref vs the mixed noise (noisy - clean), per noise type, max over files")
    for subset in ("train", "valid", "test"):
        stats: dict[str, list] = {}
        with open(corpus / subset / "manifest.csv", newline="") as handle:
            for row in csv.DictReader(handle):
                clean = read_audio(corpus / subset / "clean" / f"{row['id']}.wav")
                noise = read_audio(corpus / subset / "noisy" / f"{row['id']}.wav") - clean
                ref = read_audio(corpus / subset / "noise_ref" / f"{row['id']}.wav")
                s = similarity(ref, noise)
                stats.setdefault(row["noise_type"], []).append((s.whitened, s.raw))
        line = ", ".join(f"{k} {max(w for w, _ in v):.2f}/{max(r for _, r in v):.2f}" for k, v in sorted(stats.items()))
        print(f"  {subset:5s} whitened/raw: {line}")
    valid = PairedFolderDataset(corpus, "valid", num_frames=None, reference="noise_ref_dir")
    print(f"  whole-utterance validation (noise_ref_dir): {count(valid)}")
    old = PairedFolderDataset(corpus, "valid", num_frames=None, reference="oracle_same_utterance", on_failure="null")
    nulls = sum(int(old[i]["ref_null"]) for i in range(len(old)))
    print(f"  whole-utterance validation (oracle_same_utterance, formerly the default same_utterance): "
          f"{nulls}/{len(old)} null (the old code gave the mixed noise itself)")


def looped(tmp: Path) -> None:
    rng = np.random.default_rng(3)
    for k in range(20):
        write_audio(tmp / "speech" / f"u{k}.wav", speech_like(2 * SR, rng), SR)
    for label in ("dog", "bell", "hum"):
        for k in range(3):
            if label == "hum":  # a continuous (not looped) noise: references are accepted at once
                clip = make_noise("hum", 6 * SR, rng)
            else:
                event = rng.standard_normal(4000) * np.hanning(4000)
                clip = 0.2 * np.tile(event, 24)
            write_audio(tmp / "noise" / label / f"{k}.wav", clip, SR)
    for train in (True, False):
        data = MixingDataset(tmp / "speech", [{"root": tmp / "noise", "labels": "subfolder"}], num_frames=256,
                             length=60, train=train, on_failure="null")
        print(f"  mixing ({'train' if train else 'valid'}), pools of looped events + hum: {count(data)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--demo-dir", default=None)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cost(args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        demo(Path(args.demo_dir) if args.demo_dir else Path(tmp) / "demo")
        looped(Path(tmp) / "looped")


if __name__ == "__main__":
    main()
