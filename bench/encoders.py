"""Noise encoders: parameters (trainable / frozen), the encoder's share of a training step (frozen CLAP with and
without the embedding cache), cross-attention's extra cost per training step and per sampler step, memory.

    python bench/encoders.py                        # paper backbone (ncsnpp), CPU, batch 2 x 256 frames
    python bench/encoders.py --backbone ncsnpp_small --device cuda --batch 8
    python bench/encoders.py --only params          # parameter table only (no timing)

Pre-trained towers are built with random weights (timing and sizes do not depend on the values); references are
0.25 s, as in the study. Timings are medians of --repeats interleaved runs (cases alternate, so machine load
hits all alike). Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from sgmse_nc.config import build_model_from_config

ENCODERS = {  # name: overrides (random weights for the pre-trained towers: nothing to download)
    "cnn": ["encoder=cnn"],
    "sequence (16 tokens) + xattn": ["encoder=sequence", "backbone.xattn_resolutions=[16]"],
    "clap frozen": ["encoder=clap", "encoder.weights=null", "+encoder.random_init=true"],
    "clap fine-tuned": ["encoder=clap", "encoder.weights=null", "+encoder.random_init=true", "encoder.freeze=false"],
    "clap LoRA (rank 8)": ["encoder=clap", "encoder.weights=null", "+encoder.random_init=true", "encoder.lora.rank=8"],
    "panns frozen": ["encoder=panns", "encoder.weights=null", "+encoder.random_init=true"],
}
BYTES_PER_TRAINABLE = 4 + 4 + 8 + 4  # fp32 weight, gradient, Adam moments, EMA copy
CHECKPOINT_BYTES_PER_TRAINABLE = 8 + 4  # beside the state dict, a checkpoint holds the Adam moments and the EMA copy


def build(backbone: str, overrides: list[str], device: str):
    return build_model_from_config([f"backbone={backbone}", *overrides]).to(device)


def parameter_counts(module) -> tuple[int, int]:
    """(trainable, frozen) parameters, a frozen pre-trained tower (hidden from parameters()) included; LoRA adapters,
    which sit in that tower, count once, as trainable."""
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in module.parameters() if not p.requires_grad)
    for m in module.modules():
        if getattr(m, "frozen", False) and hasattr(m, "tower_modules"):
            frozen += sum(p.numel() for p in m.tower_modules.parameters() if not p.requires_grad)
    return trainable, frozen


def fake_batch(b: int, frames: int, device: str, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    c = lambda *s: (torch.randn(*s, dtype=torch.complex64, generator=g) * 0.1).to(device)
    x = c(b, 1, 256, frames)
    ref = 4000  # 0.25 s at 16 kHz
    return {"x": x, "y": x + c(b, 1, 256, frames), "r": c(b, 1, 256, ref // 128 + 1),
            "r_wav": (0.1 * torch.randn(b, ref, generator=g)).to(device), "norm": torch.ones(b, device=device)}


def sync(device: str):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def median_times(cases: dict, repeats: int, device: str) -> dict[str, float]:
    for fn in cases.values():  # warm-up (first-call allocations, lazy imports)
        fn()
    times = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def training_step(model, opt, batch, fresh_references: bool = False):
    def step():
        if fresh_references:  # every reference new (dynamic mixing): the cache never hits
            model.encoder._cache.clear()
        loss = model._loss(batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def encoder_share(args):
    model = build(args.backbone, ENCODERS["clap frozen"], args.device).train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    batch = fake_batch(args.batch, args.frames, args.device)

    def encode(fresh: bool):
        def run():
            if fresh:
                model.encoder._cache.clear()
            with torch.no_grad():
                model.encode(batch["r"], batch["r_wav"])
        return run

    t = median_times({"step, fresh references": training_step(model, opt, batch, fresh_references=True),
                      "encoder, fresh references": encode(True),
                      "step, cached references": training_step(model, opt, batch),
                      "encoder, cached references": encode(False)}, args.repeats, args.device)
    print(f"\n## Frozen CLAP: encoder share of a training step ({args.backbone}, batch {args.batch} x {args.frames} "
          f"frames, 0.25 s references, {args.device}, median of {args.repeats})\n")
    print("| references | training step (s) | encoder (s) | encoder share |")
    print("|---|---|---|---|")
    for kind in ("fresh", "cached"):
        step, enc = t[f"step, {kind} references"], t[f"encoder, {kind} references"]
        print(f"| {kind} | {step:.3f} | {enc:.4f} | {100 * enc / step:.1f} % |")


def cross_attention_cost(args):
    global_model = build(args.backbone, ENCODERS["cnn"], args.device).train()
    xattn_model = build(args.backbone, ENCODERS["sequence (16 tokens) + xattn"], args.device).train()
    batch = fake_batch(args.batch, args.frames, args.device)
    cases = {}
    for name, model in (("global (cnn)", global_model), ("tokens + xattn", xattn_model)):
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        cases[f"step {name}"] = training_step(model, opt, batch)
        cond = model.encode(batch["r"], batch["r_wav"])
        t = torch.full((args.batch,), 0.5, device=args.device)

        def sampler_step(model=model, cond=cond, t=t):
            with torch.no_grad():
                model(batch["y"], batch["y"], t, cond)
        cases[f"sampler {name}"] = sampler_step
    t = median_times(cases, args.repeats, args.device)
    print(f"\n## Cross-attention's cost ({args.backbone}: xattn at 16 bins, 16 tokens; batch {args.batch} x "
          f"{args.frames} frames, {args.device}, median of {args.repeats})\n")
    print("| | training step (s) | sampler step = one forward (s) |")
    print("|---|---|---|")
    for name in ("global (cnn)", "tokens + xattn"):
        print(f"| {name} | {t[f'step {name}']:.3f} | {t[f'sampler {name}']:.3f} |")
    extra = lambda kind: 100 * (t[f"{kind} tokens + xattn"] / t[f"{kind} global (cnn)"] - 1)
    print(f"| extra | {extra('step'):+.1f} % | {extra('sampler'):+.1f} % |")
    n_x = sum(p.numel() for p in xattn_model.dnn.xattn.parameters())
    print(f"\ncross-attention parameters: {n_x:,} in {len(xattn_model.dnn.xattn)} blocks")


def checkpoint_mb(module) -> float:
    """What a checkpoint holds of the module: its state dict (trainable and fine-tuned weights, buffers; a frozen
    tower is not in it), the Adam moments and the EMA copy of its trainable parameters."""
    state = sum(t.numel() * t.element_size() for t in module.state_dict().values())
    return (state + parameter_counts(module)[0] * CHECKPOINT_BYTES_PER_TRAINABLE) / 2**20


def parameter_table(args):
    print(f"\n## Parameters per encoder (backbone {args.backbone})\n")
    print("| encoder | encoder trainable | encoder frozen | model trainable | training state (MB) | checkpoint (MB) "
          "| encoder's part of it (MB) |")
    print("|---|---|---|---|---|---|---|")
    for name, overrides in ENCODERS.items():
        with torch.device("meta"):
            model = build_model_from_config([f"backbone={args.backbone}", *overrides])
        enc_train, enc_frozen = parameter_counts(model.encoder)
        trainable, frozen = parameter_counts(model)
        # weights + gradients + Adam + EMA for the trainable part, weights only for the frozen part
        state_mb = (trainable * BYTES_PER_TRAINABLE + frozen * 4) / 2**20
        print(f"| {name} | {enc_train:,} | {enc_frozen:,} | {trainable:,} | {state_mb:.0f} | {checkpoint_mb(model):.0f} "
              f"| {checkpoint_mb(model.encoder):.1f} |")
    print("\nthe frozen towers are outside parameters(): no gradient, optimizer or EMA state and not in checkpoints"
          "\n(LoRA's adapters sit in the frozen tower but are parameters: trained, averaged and checkpointed);"
          "\ntheir cache holds 2 KB per distinct reference (512 float32; + 16 KB with 16 x 256 tokens)")


def peak_memory(args):
    if not args.device.startswith("cuda"):
        print("\n(peak memory per training step: run with --device cuda)")
        return
    print(f"\n## Peak GPU memory of a training step ({args.backbone}, batch {args.batch} x {args.frames})\n")
    print("| encoder | peak allocated (GB) |")
    print("|---|---|")
    for name in ("cnn", "clap frozen", "clap fine-tuned", "sequence (16 tokens) + xattn"):
        model = build(args.backbone, ENCODERS[name], args.device).train()
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        torch.cuda.reset_peak_memory_stats()
        training_step(model, opt, fake_batch(args.batch, args.frames, args.device))()
        print(f"| {name} | {torch.cuda.max_memory_allocated() / 2**30:.2f} |")
        del model, opt
        torch.cuda.empty_cache()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="ncsnpp", help="conf/backbone/ name (default: the paper's ncsnpp)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--frames", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--only", choices=["params", "share", "xattn", "memory"], default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for part, fn in (("params", parameter_table), ("share", encoder_share), ("xattn", cross_attention_cost),
                     ("memory", peak_memory)):
        if args.only in (None, part):
            fn(args)


if __name__ == "__main__":
    main()
