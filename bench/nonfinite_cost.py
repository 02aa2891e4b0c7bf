"""What the non-finite guard costs per optimizer step, against the step itself (issue 22: under 1 %).

    OMP_NUM_THREADS=1 python bench/nonfinite_cost.py [--backbone ncsnpp_small] [--batch 2] [--frames 64] [--repeats 5]

Times one training step of the score model (forward, backward, Adam step), the guard's per-step check as
NonFiniteGuard runs it (the loss's and every gradient's finiteness: one fused 2-norm per gradient,
sgmse_nc.train.nonfinite.grads_finite, then the one host read of the flag), the exact max-abs check it replaced
(all_finite, for comparison) and the checkpoint check (every weight and EMA tensor, once per checkpoint write, not
per step). Medians after a warm-up; prints the figures, asserts nothing. The PoC scale trains backbone=ncsnpp
(conf/scale/poc.yaml), the mid-size single-GPU one is ncsnpp_small.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from sgmse_nc.config import build_model_from_config
from sgmse_nc.train.nonfinite import all_finite, grads_finite, nonfinite_tensors


def median_seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="ncsnpp_small")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = build_model_from_config([f"backbone={args.backbone}", "encoder=cnn", "sde=ouve", "sampler=pc"])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    bins = model.spec.n_fft // 2 + 1
    batch = {"x": torch.randn(args.batch, 1, bins, args.frames, dtype=torch.cfloat),
             "y": torch.randn(args.batch, 1, bins, args.frames, dtype=torch.cfloat),
             "r": torch.randn(args.batch, 1, bins, 32, dtype=torch.cfloat), "r_wav": torch.randn(args.batch, 4000)}
    loss = None

    def step():
        nonlocal loss
        optimizer.zero_grad()
        loss = model._loss(batch)
        loss.backward()
        optimizer.step()

    grads = lambda: [p.grad for p in model.parameters()]  # noqa: E731
    step_s = median_seconds(step, args.repeats)
    guard_s = median_seconds(lambda: float(~(grads_finite(grads()) & torch.isfinite(loss.detach()))),
                             args.repeats * 4)
    maxabs_s = median_seconds(lambda: float(~(all_finite(grads()) & torch.isfinite(loss.detach()))),
                              args.repeats * 4)
    ckpt_s = median_seconds(lambda: nonfinite_tensors({"state_dict": model.state_dict(),
                                                       "ema": {"shadow": dict(zip(model.ema.names,
                                                                                  model.ema.shadow))}}),
                            args.repeats * 4)
    params = sum(p.numel() for p in model.parameters())
    print(f"{args.backbone}: {params / 1e6:.2f} M parameters, batch {args.batch} x {args.frames} frames, "
          f"{torch.get_num_threads()} thread(s)")
    print(f"  training step          {step_s * 1e3:9.2f} ms")
    print(f"  guard check per step   {guard_s * 1e3:9.3f} ms  ({100 * guard_s / step_s:.2f} % of the step)")
    print(f"  (max-abs check instead {maxabs_s * 1e3:9.3f} ms  ({100 * maxabs_s / step_s:.2f} %))")
    print(f"  checkpoint check       {ckpt_s * 1e3:9.3f} ms  ({100 * ckpt_s / step_s:.2f} % of one step; once per "
          f"checkpoint write)")


if __name__ == "__main__":
    main()
