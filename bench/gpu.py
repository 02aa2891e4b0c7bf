"""The GPU benchmark, ready for the day a GPU is lent: one command, one JSON on stdout (and in --out).

    make bench-gpu                          # = python bench/gpu.py --device cuda
    python bench/gpu.py --smoke             # tiny sizes on the CPU (what the test suite runs)

On the paper-size NCSN++ (SGMSE+'s 65.6 M parameters, 256 frames, batch 8 per device) and two conditioned
variants (frozen CLAP tower, every reference new as with dynamic mixing; token encoder + cross-attention):
train-step time, samples/s and peak memory at precision 32 / bf16-mixed / 16-mixed (autocast + GradScaler, as
Lightning's precision plugins do), eager and torch.compile'd (NCSN++'s real-valued core), channels_last off
and on; then the enhancement real-time factor at the default sampler (PC, N = 30, w = 1).

A time budget (--budget-s, default 420 s) keeps the run under 8 minutes: measurements go in priority order
(every eager cell first, then compiled cells of the plain backbone, then the variants) and whatever the
budget leaves out is listed as skipped. Nothing is asserted; the figures are printed.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _bench_run():
    """bench/run.py's measuring and building helpers (one copy of timed / peak_memory / build_model)."""
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BENCH = _bench_run()
PRECISIONS = {"32": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
# A variant: (encoder, its overrides); token encoders get cross-attention where the backbone attends (build_model).
SIZES = {
    "paper": {"backbone": "ncsnpp", "batch": 8, "frames": 256, "repeats": 5, "rtf_seconds": 4.0,
              "variants": {"ncsnpp": ("none", []),
                           "clap_frozen": ("clap", ["encoder.weights=null", "+encoder.random_init=true",
                                                    "encoder.cache_size=0"]),
                           "xattn": ("sequence", [])}},
    "smoke": {"backbone": "ncsnpp_tiny", "batch": 1, "frames": 32, "repeats": 1, "rtf_seconds": 0.5, "N": 2,
              "variants": {"ncsnpp": ("none", []),
                           "clap_frozen": ("clap", ["encoder.weights=null", "+encoder.random_init=true",
                                                    "encoder.cache_size=0", "encoder.embed_dim=16",
                                                    "encoder.min_seconds=1", "encoder.max_seconds=1"]),
                           "xattn": ("sequence", ["encoder.token_dim=16"])}},
}
DIFFUSION = ["sde=ouve", "sampler=pc"]  # SGMSE+'s defaults: OUVE, predictor-corrector with N = 30


def build(size: dict, variant: str, device: str, channels_last: bool, compiled: bool):
    encoder, overrides = size["variants"][variant]
    model = BENCH.build_model(size["backbone"], encoder, device,
                              [*DIFFUSION, *overrides, f"backbone.channels_last={channels_last}"]).train()
    if compiled:
        model.dnn.compile_real_score()
    return model


def make_step(model, precision: str, device: str):
    """One optimizer step as Lightning's precision plugins take it: autocast, and for 16-mixed a GradScaler."""
    dtype = PRECISIONS[precision]
    device_type = torch.device(device).type
    scaler = torch.amp.GradScaler(device_type, enabled=precision == "16-mixed")
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step(batch):
        with torch.autocast(device_type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = model._loss(batch)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return loss
    return step


def measure_train(model, size: dict, variant: str, precision: str, compiled: bool, channels_last: bool,
                  device: str):
    batch = BENCH.random_batch(model, size["batch"], size["frames"], device)
    step = make_step(model, precision, device)
    start = time.perf_counter()
    loss = step(batch)  # warm-up: compiles when compiled
    step(batch)
    first_s = time.perf_counter() - start
    with BENCH.peak_memory(device) as mem:
        step(batch)
    tm = BENCH.timed(lambda: step(batch), device, repeats=size["repeats"], warmup=0)
    return {"variant": variant, "precision": precision, "compiled": compiled, "channels_last": channels_last,
            "step_s": tm["median_s"], "samples_per_s": size["batch"] / tm["median_s"],
            "warmup_s": first_s, "peak_mib": mem["peak_mib"], "loss_finite": bool(torch.isfinite(loss))}


def measure_rtf(size: dict, device: str) -> dict:
    """enhance() of one file with the default sampler and N at w = 1, precision 32, eager."""
    from sgmse_nc.enhance.core import enhance
    model = BENCH.build_model(size["backbone"], "cnn", device, DIFFUSION).eval()
    n = int(size["rtf_seconds"] * BENCH.SAMPLE_RATE)
    noisy, ref = [0.1 * torch.randn(n)], [0.1 * torch.randn(BENCH.SAMPLE_RATE)]
    overrides = {"N": size["N"]} if "N" in size else {}
    enhance(model, noisy, ref, batch_size=1, **overrides)  # warm-up
    tm = BENCH.timed(lambda: enhance(model, noisy, ref, batch_size=1, **overrides), device, repeats=1, warmup=0)
    return {"backbone": size["backbone"], "encoder": "cnn", "sampler": model.sampler_cfg.get("name"),
            "N": overrides.get("N", model.sampler_cfg.get("N")), "seconds": size["rtf_seconds"],
            "rtf": tm["median_s"] / size["rtf_seconds"]}


def plan(size: dict, compile_too: bool) -> list[tuple]:
    """(variant, precision, compiled, channels_last) in priority order."""
    variants = list(size["variants"])
    cells = [(v, p, False, cl) for v in variants for cl in (False, True) for p in PRECISIONS]
    if compile_too:
        cells += [(variants[0], p, True, cl) for cl in (False, True) for p in PRECISIONS]
        cells += [(v, p, True, False) for v in variants[1:] for p in PRECISIONS]
    return cells


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--smoke", action="store_true", help="tiny sizes (CPU): the test suite's check")
    p.add_argument("--no-compile", action="store_true", help="eager cells only")
    p.add_argument("--budget-s", type=float, default=420.0, help="stop starting new cells after this long")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = p.parse_args(argv)
    started = time.perf_counter()
    size = SIZES["smoke" if args.smoke else "paper"]
    device = args.device
    info = {"device": torch.cuda.get_device_name(0) if device.startswith("cuda") else platform.processor() or "cpu",
            "torch": torch.__version__, "backbone": size["backbone"], "frames": size["frames"],
            "batch_per_device": size["batch"], "devices": 1, "accumulate_grad_batches": 1,
            "effective_batch": size["batch"], "budget_s": args.budget_s}
    rows, skipped, built = [], [], (None, None)  # one model per (variant, compiled, channels_last)
    for cell in plan(size, not args.no_compile):
        variant, precision, compiled, channels_last = cell
        if time.perf_counter() - started > args.budget_s:
            skipped.append(dict(zip(("variant", "precision", "compiled", "channels_last"), cell)))
            continue
        if built[0] != (variant, compiled, channels_last):
            built = None, None  # free the last model first
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
            built = (variant, compiled, channels_last), build(size, variant, device, channels_last, compiled)
        try:
            rows.append(measure_train(built[1], size, *cell, device))
        except Exception as err:  # a precision or compile mode this device lacks: say so, go on
            rows.append({**dict(zip(("variant", "precision", "compiled", "channels_last"), cell)),
                         "error": f"{type(err).__name__}: {err}"[:200]})
    rtf = measure_rtf(size, device)
    result = {"info": {**info, "wall_s": time.perf_counter() - started}, "train": rows, "skipped": skipped,
              "enhance": rtf}
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return result


if __name__ == "__main__":
    main()
