"""Enhancement speed: real-time factor (processing seconds / audio seconds) of `sgmse_nc.enhance.core.enhance`
for a backbone config, with a randomly initialised model (speed does not depend on the weights).

    python bench/enhance_rtf.py --backbone ncsnpp_tiny --seconds 4 --N 30
    python bench/enhance_rtf.py --backbone ncsnpp --seconds 2 --N 30 --device cuda --guidance 1.5
"""
import argparse
import time

import torch

from sgmse_nc.config import build_model_from_config
from sgmse_nc.enhance.core import enhance


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="ncsnpp_tiny")
    p.add_argument("--encoder", default="cnn")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--files", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--N", type=int, default=30)
    p.add_argument("--guidance", type=float, default=1.0, help="w != 1 doubles the batch of each score call")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = build_model_from_config([f"backbone={args.backbone}", f"encoder={args.encoder}"]).eval().to(args.device)
    n = int(args.seconds * 16000)
    noisy = [0.1 * torch.randn(n) for _ in range(args.files)]
    refs = [0.1 * torch.randn(16000) for _ in range(args.files)]
    enhance(model, noisy[:1], refs[:1], N=2)  # warm-up
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    enhance(model, noisy, refs, batch_size=args.batch_size, N=args.N, guidance_scale=args.guidance)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    audio = args.files * args.seconds
    print(f"backbone={args.backbone} encoder={args.encoder} device={args.device} threads={torch.get_num_threads()} "
          f"N={args.N} w={args.guidance} files={args.files}x{args.seconds:.1f}s batch={args.batch_size}")
    print(f"  {elapsed:.2f} s for {audio:.1f} s of audio: RTF {elapsed / audio:.3f} "
          f"({elapsed / args.files:.2f} s per file, {1000 * elapsed / (args.files * args.N):.1f} ms per step per file)")


if __name__ == "__main__":
    main()
