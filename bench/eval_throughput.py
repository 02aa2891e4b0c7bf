"""Evaluation throughput: files/s of `evaluate_folders` (PESQ + ESTOI + SI-SDR, noisy input beside) against
the number of worker processes, on synthetic 16 kHz utterances. Each setting scores a fresh output folder
(nothing reused); the settings run interleaved over `--repeats` rounds so machine load hits all alike.

    python bench/eval_throughput.py --files 100 --seconds 4 --workers 1 2 4 --repeats 2
"""
import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from sgmse_nc.eval.folder import evaluate_folders

SR = 16000


def make_corpus(root: Path, files: int, seconds: float) -> None:
    t = np.arange(int(seconds * SR)) / SR
    for i in range(files):
        rng = np.random.default_rng(i)
        f0 = 100 + 80 * rng.random()
        clean = sum(np.sin(2 * np.pi * k * f0 * t + rng.random() * 6) / k for k in range(1, 10))
        clean = 0.1 * clean * np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None) ** 0.5
        noise = 0.03 * rng.standard_normal(len(t))
        for folder, wav in (("clean", clean), ("noisy", clean + noise), ("enhanced", clean + 0.3 * noise)):
            (root / folder).mkdir(parents=True, exist_ok=True)
            sf.write(root / folder / f"u{i:04d}.wav", wav.astype(np.float32), SR)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=100)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args()
    print(f"{os.cpu_count()} CPU(s); {args.files} files of {args.seconds:g} s; PESQ + ESTOI + SI-SDR of the "
          f"enhanced and the noisy file (2 scorings per file)")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_corpus(root, args.files, args.seconds)
        times = {w: [] for w in args.workers}
        for r in range(args.repeats):
            for w in args.workers:
                start = time.perf_counter()
                evaluate_folders(root / "enhanced", root / "clean", root / "noisy", out_dir=root / f"eval_{w}_{r}",
                                 num_workers=w, plot=False, quiet=True)
                times[w].append(time.perf_counter() - start)
    print(f"{'workers':>8} {'files/s':>9} {'speed-up':>9}   (best of {args.repeats}, pool start-up included)")
    base = min(times[args.workers[0]])
    for w in args.workers:
        best = min(times[w])
        print(f"{w:>8} {args.files / best:>9.2f} {base / best:>9.2f}")


if __name__ == "__main__":
    main()
