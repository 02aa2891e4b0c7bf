"""Backbone sizes and CPU training-step cost of the NCSN++ configs (printed, never asserted).

    python bench/model_size.py                       # counts + timing of ncsnpp_tiny and ncsnpp
    python bench/model_size.py --time ncsnpp_tiny --batch 2 --frames 256 --iterations 5

Parameter counts come from conf/backbone/*.yaml (instantiated on the meta device, so instant).
Each timing runs in a fresh process so its peak RSS is its own: one step = forward, the SGMSE+ loss,
backward and an Adam update on random complex spectrograms.
"""
from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CONFIGS = ("ncsnpp", "ncsnpp_small", "ncsnpp_tiny")


def build(name: str, cond_dim: int, device: str = "cpu"):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name=f"backbone/{name}")
    with torch.device(device):
        return instantiate(cfg.backbone, cond_dim=cond_dim)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def time_steps(name: str, batch: int, frames: int, iterations: int, threads: int) -> dict:
    """Runs in a child process: mean step time (after one warm-up step) and peak RSS."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    rss_before = peak_rss_mib()
    net = build(name, cond_dim=0)
    frames = -(-frames // net.time_multiple) * net.time_multiple
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    x_t, y = (torch.randn(batch, 1, net.image_size, frames, dtype=torch.cfloat) for _ in range(2))
    z, t = torch.randn_like(x_t), torch.rand(batch) * 0.97 + 0.03
    times = []
    for _ in range(iterations + 1):
        start = time.perf_counter()
        loss = (net(x_t, y, t) * 0.1 + z).abs().pow(2).sum(dim=(1, 2, 3)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return {"frames": frames, "step_s": sum(times[1:]) / iterations, "warmup_s": times[0],
            "rss_before_mib": rss_before, "peak_rss_mib": peak_rss_mib()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--frames", type=int, default=256)
    parser.add_argument("--iterations", type=int, default=3, help="timed steps after one warm-up step")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--time", nargs="*", default=["ncsnpp_tiny", "ncsnpp"], choices=CONFIGS,
                        help="configs to time (none: counts only)")
    args = parser.parse_args()

    from sgmse_nc.nets import count_parameters
    print(f"{'config':14s} {'cond_dim':>8s} {'parameters':>12s} {'time_multiple':>13s}")
    for name in CONFIGS:
        for cond_dim in (0, 512):
            net = build(name, cond_dim, device="meta")
            print(f"{name:14s} {cond_dim:8d} {count_parameters(net):12,d} {net.time_multiple:13d}")

    if args.time:
        print(f"\nCPU training step (forward + loss + backward + Adam), batch {args.batch}, "
              f"{args.threads} thread(s), torch {torch.__version__}")
    context = multiprocessing.get_context("spawn")
    for name in args.time:
        with context.Pool(1) as pool:
            r = pool.apply(time_steps, (name, args.batch, args.frames, args.iterations, args.threads))
        print(f"{name:14s} {r['frames']} frames: {r['step_s']:.3f} s/step (warm-up {r['warmup_s']:.3f} s), "
              f"peak RSS {r['peak_rss_mib']:.0f} MiB (after imports {r['rss_before_mib']:.0f} MiB)")


if __name__ == "__main__":
    main()
