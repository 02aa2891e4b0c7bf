"""Our NCSN++ against the reference implementation (sp-uhh/sgmse), same random weights, one process.

    git -C /path/to/sgmse.git archive HEAD | tar -x -C /tmp/sgmse_ref      # a checkout, never committed
    nice -n 10 python bench/ncsnpp_vs_reference.py /tmp/sgmse_ref
    python bench/ncsnpp_vs_reference.py /tmp/sgmse_ref --train-shape 2 256 --forward-shape 1 512 --repeats 5

Prints: the largest output difference (relative to the output's peak), the weight gradients' difference of
one training step (relative L2 and largest, against the reference's), interleaved medians of the
forward (no grad) and of a training step (forward + loss + backward) with the ratio ours/reference,
(--nhwc: also ours with channels_last=True, NHWC feature maps) in wall and in CPU time, the activation
memory autograd keeps for backward (exact, independent of load), each peak RSS
measured in a fresh process per implementation (ours/reference), the counted FLOPs of
one forward (torch.utils.flop_counter) and the achieved FLOP/s against a matmul timed in the same
run, and the cpu/wall ratio (< 1 threads x 100 % means others compete for the cores).
--profile adds where each implementation's time goes (torch.profiler self time by kind of operation, forward
and training step) and the floor it implies: our 3x3 convolutions run the reference's own oneDNN kernels, so
ours / reference cannot go below (our 3x3 convolution time) / (reference total) without faster convolutions.
The reference's forward takes [x_t, y] stacked as 2 complex channels and returns minus our score.
"""
from __future__ import annotations

import argparse
import ctypes
import multiprocessing
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def load_reference(path: Path):
    """The reference NCSNpp class from a checkout of sp-uhh/sgmse (its upfirdn2d falls back to native
    PyTorch on CPU)."""
    if not (path / "sgmse" / "backbones" / "ncsnpp.py").is_file():
        return None
    sys.path.insert(0, str(path))
    from sgmse.backbones.ncsnpp import NCSNpp as Reference
    return Reference


def build_pair(reference_path: Path, seed: int = 0):
    """Ours and the reference with identical (random, non-silent) weights."""
    from sgmse_nc.nets import NCSNpp
    torch.manual_seed(seed)
    ours = NCSNpp()
    with torch.no_grad():  # wake the near-zero residual branches so the comparison covers every path
        for p in ours.parameters():
            if p.dim() > 1 and p.abs().max() < 1e-6:
                p.normal_(0.0, 0.02)
    reference = load_reference(reference_path)()
    reference.load_state_dict(ours.state_dict(), strict=True)
    return ours, reference


def inputs(batch: int, frames: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x_t, y = (torch.randn(batch, 1, 256, frames, dtype=torch.cfloat, generator=g) for _ in range(2))
    t = torch.rand(batch, generator=g) * 0.97 + 0.03
    return x_t, y, t


def call(net, name, x_t, y, t):
    return net(x_t, y, t) if name.startswith("ours") else -net(torch.cat([x_t, y], dim=1), t)


def step(net, name, x_t, y, t, train: bool):
    if train:
        loss = torch.view_as_real(call(net, name, x_t, y, t)).pow(2).mean()
        loss.backward()
        net.zero_grad(set_to_none=True)
    else:
        with torch.no_grad():
            call(net, name, x_t, y, t)


def timed(fn):
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def matmul_flops_per_s(size: int = 2048, repeats: int = 3) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = min(timed(lambda: a @ b)[0] for _ in range(repeats))
    return 2 * size**3 / best


def forward_flops(net, batch: int, frames: int) -> int:
    from torch.utils.flop_counter import FlopCounterMode
    x_t, y, t = inputs(batch, frames)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(x_t, y, t)
    return counter.get_total_flops()


def gradient_differences(nets: dict, batch: int, frames: int) -> dict:
    """{label: (relative L2, max |Δ| / max |reference|)} of all weight gradients of one training step's loss
    against the reference's (same weights, same inputs)."""
    x_t, y, t = inputs(batch, frames, seed=2)
    grads = {}
    for name, net in nets.items():
        net.train(True)
        loss = torch.view_as_real(call(net, name, x_t, y, t)).pow(2).mean()
        loss.backward()
        grads[name] = torch.cat([torch.zeros(p.numel()) if p.grad is None else p.grad.flatten()  # unused: 0
                                 for _, p in sorted(net.named_parameters(), key=lambda item: item[0])])
        net.zero_grad(set_to_none=True)
    ref = grads["reference"]
    return {("" if name == "ours" else " " + name.removeprefix("ours ")):
            (((g - ref).norm() / ref.norm()).item(), ((g - ref).abs().max() / ref.abs().max()).item())
            for name, g in grads.items() if name != "reference"}


KINDS = ("3x3 conv", "FIR resampling", "1x1 conv / matmul", "GroupNorm", "activation", "attention",
         "copies (cat, pad, copy)", "elementwise", "other")


def kind_of(name: str, shapes: list) -> str:
    """The kind of one aten operation, from its name and (for convolutions) its weight's shape."""
    op = name.removeprefix("aten::")
    if "conv" in op:
        weight = shapes[2] if "backward" in op else shapes[1] if len(shapes) > 1 else []
        if len(weight) != 4:
            return "other"
        if weight[2:] == [1, 1]:
            return "1x1 conv / matmul"
        return "FIR resampling" if weight[1] == 1 else "3x3 conv"
    if op.rstrip("_") in ("mm", "bmm", "baddbmm", "addmm", "matmul", "linear") or op.endswith("mm_backward"):
        return "1x1 conv / matmul"
    if "group_norm" in op:
        return "GroupNorm"
    if op.startswith(("silu", "relu", "elu", "leaky_relu", "gelu", "sigmoid")):
        return "activation"
    if "attention" in op or op.startswith("_softmax"):
        return "attention"
    if op.rstrip("_") in ("cat", "copy", "fill", "zero", "constant_pad_nd", "_to_copy", "clone", "contiguous",
                          "index", "slice_backward", "im2col", "col2im"):
        return "copies (cat, pad, copy)"
    if op.rstrip("_") in ("add", "sub", "mul", "div", "neg", "pow", "sum", "mean", "addcmul", "where", "exp",
                          "sin", "cos", "log", "sqrt", "rsqrt", "abs", "threshold_backward", "masked_fill"):
        return "elementwise"
    return "other"


def conv3x3_flops(shapes: list) -> int:
    """FLOPs of a stride-1, same-padded 3x3 convolution forward from its input and weight shapes."""
    (n, _, h, w), (o, i, kh, kw) = shapes[0], shapes[1]
    return 2 * n * o * h * w * i * kh * kw


def profile_by_kind(fn) -> tuple[dict, int]:
    """({kind: seconds of self CPU time}, FLOPs of the 3x3 convolution forwards) of one call of fn."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        fn()
    seconds, flops = dict.fromkeys(KINDS, 0.0), 0
    for event in prof.events():
        kind = kind_of(event.name, event.input_shapes)
        seconds[kind] += event.self_cpu_time_total / 1e6
        if kind == "3x3 conv" and event.name in ("aten::mkldnn_convolution", "aten::_slow_conv2d_forward"):
            flops += conv3x3_flops(event.input_shapes)
    return seconds, flops


def print_profile(nets: dict, shapes: dict, matmul: float, repeats: int = 1):
    """Per kind of operation, each net's self time for a forward and a training step (of the profiled run
    with the median total, after a warm-up); the floor."""
    for mode, (batch, frames), train in (("forward", shapes["forward"], False),
                                         ("train step", shapes["train"], True)):
        x_t, y, t = inputs(batch, frames)
        table = {}
        for name, net in nets.items():
            net.train(train)
            step(net, name, x_t, y, t, train)  # warm-up
            runs = sorted((profile_by_kind(lambda: step(net, name, x_t, y, t, train)) for _ in range(repeats)),
                          key=lambda run: sum(run[0].values()))
            table[name] = runs[len(runs) // 2]
        print(f"\nwhere the time goes, {mode} {batch}x256x{frames} (torch.profiler self CPU s, median of {repeats})")
        print(f"{'':26s}" + "".join(f" {name:>11s}" for name in nets))
        for kind in KINDS:
            print(f"{kind:26s}" + "".join(f" {table[name][0][kind]:11.2f}" for name in nets))
        totals = {name: sum(seconds.values()) for name, (seconds, _) in table.items()}
        print(f"{'total':26s}" + "".join(f" {totals[name]:11.2f}" for name in nets))
        for name in nets:
            if name == "reference":
                continue
            conv = table[name][0]["3x3 conv"]
            print(f"{name}: 3x3 convolutions alone are {conv / totals['reference']:.3f} x the reference's total "
                  f"(the floor of ours/reference), {conv / totals[name]:.0%} of ours")
        if not train:
            for name, (seconds, flops) in table.items():
                print(f"{name}: 3x3 convolutions {flops / 1e12:.3f} TFLOP at {flops / seconds['3x3 conv'] / 1e9:.0f}"
                      f" GFLOP/s = {flops / seconds['3x3 conv'] / matmul:.2f} x the matmul's {matmul / 1e9:.0f}")


def saved_for_backward_mib(net, name, x_t, y, t) -> tuple[float, float]:
    """(all, activations only) MiB of distinct storages autograd keeps for backward after one forward: the
    part of training memory the implementation decides (weights, grads and Adam state are the same)."""
    params = {p.untyped_storage().data_ptr() for p in net.parameters()}
    seen = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    net.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = call(net, name, x_t, y, t)
    del out
    total = sum(seen.values())
    return total / 2**20, (total - sum(v for k, v in seen.items() if k in params)) / 2**20


def peak_rss_child(reference_path: str, name: str, batch: int, frames: int, train: bool, threads: int):
    """In a fresh process: peak RSS growth (MiB) of one step over the RSS after building the net."""
    torch.set_num_threads(threads)
    from sgmse_nc.nets import NCSNpp
    if name.startswith("ours"):  # memory ignores the weights
        net = NCSNpp(channels_last=name == "ours NHWC")
    else:
        net = load_reference(Path(reference_path))()
    net.train(train)
    x_t, y, t = inputs(batch, frames)
    libc = ctypes.CDLL("libc.so.6")  # big blocks from mmap and back on free: RSS follows live tensors
    libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark (building the net peaks higher)
    before = _status_kib("VmRSS")
    step(net, name, x_t, y, t, train)
    return (_status_kib("VmHWM") - before) / 1024


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("reference", type=Path, help="a checkout of sp-uhh/sgmse (the folder holding sgmse/)")
    p.add_argument("--train-shape", type=int, nargs=2, default=(2, 256), metavar=("BATCH", "FRAMES"))
    p.add_argument("--forward-shape", type=int, nargs=2, default=(1, 512), metavar=("BATCH", "FRAMES"))
    p.add_argument("--repeats", type=int, default=3, help="timed rounds per implementation after a warm-up")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-memory", action="store_true", help="skip the fresh-process peak-memory runs")
    p.add_argument("--nhwc", action="store_true",
                   help="also time ours with NHWC feature maps (channels_last=True), same weights")
    p.add_argument("--profile", action="store_true",
                   help="also print where each implementation's time goes, by kind of operation")
    args = p.parse_args()
    if load_reference(args.reference) is None:
        print(f"skipped: no reference checkout at {args.reference} (expected {args.reference}/sgmse/backbones/"
              f"ncsnpp.py); export one with `git -C <sgmse.git> archive HEAD | tar -x -C {args.reference}`")
        return
    torch.set_num_threads(args.threads)
    ours, reference = build_pair(args.reference)
    nets = {"ours": ours, "reference": reference}
    if args.nhwc:
        import copy
        nets["ours NHWC"] = copy.deepcopy(ours)
        nets["ours NHWC"].channels_last = True
    print(f"torch {torch.__version__}, {args.threads} thread(s); reference from {args.reference}")

    x_t, y, t = inputs(1, 128)
    with torch.no_grad():
        a, b = call(ours, "ours", x_t, y, t), call(reference, "reference", x_t, y, t)
    rel = ((a - b).abs().max() / b.abs().max()).item()
    print(f"outputs: max |ours - reference| / max |reference| = {rel:.2e} ({'equal' if rel <= 1e-5 else 'DIFFERENT'})")
    if "ours NHWC" in nets:
        with torch.no_grad():
            rel = ((call(nets["ours NHWC"], "ours NHWC", x_t, y, t) - b).abs().max() / b.abs().max()).item()
        print(f"outputs NHWC: max |ours NHWC - reference| / max |reference| = {rel:.2e}")

    for label, diff in gradient_differences(nets, *args.train_shape).items():
        print(f"gradients{label}: relative L2 of every weight's gradient vs the reference's {diff[0]:.2e}, "
              f"max |Δ| / max |reference| {diff[1]:.2e} (training step {args.train_shape[0]}x256x"
              f"{args.train_shape[1]})")

    rows, cpu_rows = [], []
    for mode, (batch, frames), train in (("forward", args.forward_shape, False),
                                         ("train step", args.train_shape, True)):
        x_t, y, t = inputs(batch, frames)
        times = {name: [] for name in nets}
        cpu_times = {name: [] for name in nets}
        cpu = wall = 0.0
        for rnd in range(args.repeats + 1):  # round 0 warms up; the order alternates every round
            order = list(nets) if rnd % 2 else list(nets)[::-1]
            for name in order:
                nets[name].train(train)
                w, c = timed(lambda: step(nets[name], name, x_t, y, t, train))
                if rnd:
                    times[name].append(w)
                    cpu_times[name].append(c)
                    wall, cpu = wall + w, cpu + c
        med = {name: statistics.median(v) for name, v in times.items()}
        cpu_med = {name: statistics.median(v) for name, v in cpu_times.items()}
        rows.append((f"{mode} {batch}x256x{frames}", med["ours"], med["reference"], cpu / wall,
                     med.get("ours NHWC")))
        cpu_rows.append((f"{mode} {batch}x256x{frames}", cpu_med["ours"], cpu_med["reference"],
                         cpu_med.get("ours NHWC")))

    matmul = matmul_flops_per_s()
    flops = forward_flops(ours, *args.forward_shape)
    fwd_time = rows[0][1]
    matmul_after = matmul_flops_per_s()

    print(f"\n{'':24s} {'ours s':>9s} {'ref s':>9s} {'ours/ref':>9s} {'cpu/wall':>9s}"
          + (f" {'NHWC s':>9s} {'NHWC/ref':>9s}" if args.nhwc else ""))
    for label, o, r, load, nhwc in rows:
        print(f"{label:24s} {o:9.2f} {r:9.2f} {o / r:9.3f} {load:9.2f}"
              + (f" {nhwc:9.2f} {nhwc / r:9.3f}" if nhwc else ""))
    print(f"\nCPU time (process_time; less sensitive to other processes than wall time)\n"
          f"{'':24s} {'ours s':>9s} {'ref s':>9s} {'ours/ref':>9s}" + (f" {'NHWC s':>9s} {'NHWC/ref':>9s}" if args.nhwc
                                                                      else ""))
    for label, o, r, nhwc in cpu_rows:
        print(f"{label:24s} {o:9.2f} {r:9.2f} {o / r:9.3f}" + (f" {nhwc:9.2f} {nhwc / r:9.3f}" if nhwc else ""))
    x_t, y, t = inputs(*args.train_shape)
    saved = {name: saved_for_backward_mib(net, name, x_t, y, t) for name, net in nets.items()}
    print(f"\nsaved for backward, train step {args.train_shape[0]}x256x{args.train_shape[1]}: activations ours "
          f"{saved['ours'][1]:.0f} MiB, reference {saved['reference'][1]:.0f} MiB, ours/ref "
          f"{saved['ours'][1] / saved['reference'][1]:.3f} (with the weights conv keeps: "
          f"{saved['ours'][0]:.0f} vs {saved['reference'][0]:.0f} MiB)")
    if not args.no_memory:
        ctx = multiprocessing.get_context("spawn")
        print("\npeak RSS growth of one step (fresh process each)")
        for mode, (batch, frames), train in (("forward", args.forward_shape, False),
                                             ("train step", args.train_shape, True)):
            mem = {}
            for name in nets:
                with ctx.Pool(1) as pool:
                    mem[name] = pool.apply(peak_rss_child, (str(args.reference), name, batch, frames, train,
                                                            args.threads))
            ratio = f"{mem['ours'] / mem['reference']:.3f}" if mem["reference"] > 0 else "n/a (too small to see)"
            print(f"{mode + f' {batch}x256x{frames}':24s} ours {mem['ours']:8.0f} MiB  reference "
                  f"{mem['reference']:8.0f} MiB  ours/ref {ratio}"
                  + (f"  NHWC {mem['ours NHWC']:8.0f} MiB" if "ours NHWC" in mem else ""))
    achieved = flops / fwd_time
    mm = statistics.mean([matmul, matmul_after])
    print(f"\none forward {args.forward_shape[0]}x256x{args.forward_shape[1]}: {flops / 1e12:.3f} TFLOP counted; "
          f"achieved {achieved / 1e9:.0f} GFLOP/s = {achieved / mm:.2f} x the matmul's {mm / 1e9:.0f} GFLOP/s "
          f"(2048^2 fp32, before {matmul / 1e9:.0f} / after {matmul_after / 1e9:.0f})")
    if rows[0][4]:
        print(f"NHWC: achieved {flops / rows[0][4] / 1e9:.0f} GFLOP/s = {flops / rows[0][4] / mm:.2f} x the matmul's")
    if args.profile:
        print_profile(nets, {"forward": args.forward_shape, "train": args.train_shape}, mm, args.repeats)


if __name__ == "__main__":
    main()
