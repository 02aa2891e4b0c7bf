"""Can NHWC (channels_last) NCSN++ keep NCHW's precision? GroupNorm variants on one feature map, timed.

    python bench/groupnorm_nhwc.py                        # 1 x 128 x 256 x 256 and 2 x 256 x 64 x 64, mean/std 6
    python bench/groupnorm_nhwc.py --shape 1 64 32 32 --repeats 2

PyTorch's NHWC GroupNorm on the CPU loses precision where a group's mean is large against its spread (the
README's NCSN++ section). Each row: CPU milliseconds per call (1 thread, median) and the relative L2 error
against a float64 GroupNorm, for
  nchw native     F.group_norm on NCHW (the precise reference point)
  nhwc native     F.group_norm on NHWC (fast, imprecise)
  nhwc var_mean   exact statistics: per-channel var_mean over H, W, combined per group, then x * a + b
  nhwc shifted    native NHWC after subtracting a per-group estimate of the mean (one pixel's channels)
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

GROUPS, EPS = 32, 1e-6


def group_norm_var_mean(x, weight, bias, groups: int = GROUPS, eps: float = EPS):
    """Exact GroupNorm statistics for an NHWC map: per-channel moments, combined per group (equal counts)."""
    n, c = x.shape[:2]
    var_c, mean_c = torch.var_mean(x, dim=(2, 3), correction=0)
    mean_c, var_c = mean_c.view(n, groups, -1), var_c.view(n, groups, -1)
    mean = mean_c.mean(-1)
    rstd = (var_c.mean(-1) + mean_c.var(-1, correction=0) + eps).rsqrt()
    a = (weight.view(1, groups, -1) * rstd[..., None]).view(n, c, 1, 1)
    b = bias.view(1, c, 1, 1) - mean.repeat_interleave(c // groups, 1).view(n, c, 1, 1) * a
    return torch.addcmul(b, x, a)


def group_norm_shifted(x, weight, bias, groups: int = GROUPS, eps: float = EPS):
    """Native GroupNorm of x minus a per-group shift near its mean (GroupNorm ignores a per-group shift)."""
    n, c = x.shape[:2]
    shift = x[:, :, 0, 0].reshape(n, groups, -1).mean(-1).repeat_interleave(c // groups, 1).view(n, c, 1, 1)
    return F.group_norm(x - shift, groups, weight, bias, eps)


def cpu_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return 1000 * statistics.median(times)


def measure(shape, repeats: int, mean_over_std: float = 6.0) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=g) + mean_over_std
    weight, bias = torch.randn(shape[1], generator=g), torch.randn(shape[1], generator=g)
    exact = F.group_norm(x.double(), GROUPS, weight.double(), bias.double(), EPS)
    nhwc = x.contiguous(memory_format=torch.channels_last)
    variants = {"nchw native": lambda: F.group_norm(x, GROUPS, weight, bias, EPS),
                "nhwc native": lambda: F.group_norm(nhwc, GROUPS, weight, bias, EPS),
                "nhwc var_mean": lambda: group_norm_var_mean(nhwc, weight, bias),
                "nhwc shifted": lambda: group_norm_shifted(nhwc, weight, bias)}
    rows = []
    for name, fn in variants.items():
        out = fn().double()
        rows.append({"shape": "x".join(map(str, shape)), "variant": name, "cpu_ms": cpu_ms(fn, repeats),
                     "rel_error": ((out - exact).norm() / exact.norm()).item()})
    return rows


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", type=int, nargs=4, action="append", metavar=("N", "C", "H", "W"))
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    print(f"{'shape':>16s} {'variant':>14s} {'CPU ms':>8s} {'rel. error':>10s}")
    for shape in args.shape or [(1, 128, 256, 256), (2, 256, 64, 64)]:
        for row in measure(tuple(shape), args.repeats):
            print(f"{row['shape']:>16s} {row['variant']:>14s} {row['cpu_ms']:8.1f} {row['rel_error']:10.2e}",
                  flush=True)
            rows.append(row)
    return rows


if __name__ == "__main__":
    main()
