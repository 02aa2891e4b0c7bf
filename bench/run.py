"""The benchmark suite: one command, one table per section, one JSON file.

    make bench                                   # = python bench/run.py (sized for a 2-core CPU box)
    python bench/run.py --full                   # + the full NCSN++ in the training table
    python bench/run.py --quick                  # tiny sizes, a couple of minutes
    python bench/run.py --only train flops       # some sections
    python bench/run.py --device cuda            # the real batch on a GPU

Sections: `train` (step time and peak memory per backbone x encoder; every conf/encoder/*.yaml that builds
appears), `sampling` (network time per evaluation, evaluations per utterance for every registered sampler at
its default N with w = 1 and w = 3, on short and long inputs, and the real-time factor they imply),
`memory` (peak memory of enhance() vs file length, with enhance()'s default chunking), `folder`
(enhance_folder on 32 files of mixed lengths, batch 1 vs batched, their outputs' largest difference, and
the network's time per batch item at both batch sizes), `ddp` (training throughput of 1 vs 2 CPU
processes), `flops` (counted FLOPs of one NCSN++ forward and the achieved FLOP/s as a fraction of a matmul
measured in the same run). Timings are medians after a warm-up; comparisons are ratios within this run;
cpu/wall < threads means other processes took the cores (the figures are then contended). Nothing here is
asserted: the figures are printed and written to --out.
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import inspect
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SAMPLE_RATE = 16000
# Timing-only sections first: "train" and "memory" turn glibc's large-block caching off for the rest of the
# process (exact peak RSS), which makes every later big allocation page-fault (enhance() of 16 two-second files
# with the tiny net, 1 thread: 19.0 s plain, 27.9 s under it).
SECTIONS = ("flops", "sampling", "folder", "train", "memory", "ddp")


# ---- measuring -----------------------------------------------------------------------------------------
def _sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device="cpu", repeats: int = 3, warmup: int = 1) -> dict:
    """Median wall time of fn() after warm-up calls, and the cpu/wall ratio of the timed calls."""
    for _ in range(warmup):
        fn()
    walls, cpu = [], 0.0
    for _ in range(repeats):
        _sync(device)
        c, w = time.process_time(), time.perf_counter()
        fn()
        _sync(device)
        walls.append(time.perf_counter() - w)
        cpu += time.process_time() - c
    return {"median_s": statistics.median(walls), "cpu_per_wall": cpu / sum(walls)}


def _limit_malloc_caching():
    """Large blocks straight from mmap and back on free, so the resident set follows live tensors (glibc)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD: fixed (no dynamic growth), 1 MiB
        libc.mallopt(-1, 1 << 20)  # M_TRIM_THRESHOLD


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


@contextlib.contextmanager
def peak_memory(device="cpu"):
    """Yields a dict whose 'peak_mib' becomes the peak growth of memory inside the block: the CUDA
    allocator's peak on a GPU, else the resident set's high-water mark (reset via /proc/self/clear_refs)."""
    out = {"peak_mib": None}
    if str(device).startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        yield out
        out["peak_mib"] = (torch.cuda.max_memory_allocated() - base) / 2**20
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        base = _status_kib("VmRSS")
    except OSError:
        yield out
        return
    yield out
    out["peak_mib"] = (_status_kib("VmHWM") - base) / 1024


def matmul_flops_per_s(device="cpu", size: int = 2048) -> float:
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    return 2 * size**3 / timed(lambda: a @ b, device, repeats=3)["median_s"]


# ---- building ------------------------------------------------------------------------------------------
def encoder_names() -> list[str]:
    """Every encoder config (conf/encoder/*.yaml): a new one appears here once it is registered."""
    return sorted(p.stem for p in (ROOT / "conf" / "encoder").glob("*.yaml"))


def build_model(backbone: str, encoder: str = "none", device="cpu", extra=()):
    """A ScoreModel from the project's configs; token encoders get cross-attention where the backbone
    attends."""
    from sgmse_nc.config import build_model_from_config, compose_config
    # paths.*: outside a Hydra run there is no runtime.cwd; the repository root stands in (local weights)
    overrides = [f"backbone={backbone}", f"encoder={encoder}", f"paths.root_dir={ROOT}",
                 f"paths.output_dir={ROOT}/outputs/bench", *extra]
    cfg = compose_config(overrides)
    if cfg.encoder.get("token_dim") and cfg.encoder.get("tokens", True):  # clap/panns emit tokens only if asked
        overrides.append(f"backbone.xattn_resolutions=[{','.join(map(str, cfg.backbone.attn_resolutions))}]")
    torch.manual_seed(0)
    return build_model_from_config(overrides).to(device)


def random_batch(model, batch: int, frames: int, device="cpu") -> dict:
    g = torch.Generator().manual_seed(0)
    x, y, r = (0.3 * torch.randn(batch, 1, model.dnn.image_size, frames, dtype=torch.cfloat, generator=g)
               for _ in range(3))
    r_wav = 0.1 * torch.randn(batch, (frames - 1) * model.spec.hop_length, generator=g)
    return {k: v.to(device) for k, v in {"x": x, "y": y, "r": r, "r_wav": r_wav}.items()}


class CountCalls:
    """Counts network evaluations (calls) and the examples they carried (rows) on model.dnn."""

    def __init__(self, net):
        self.calls = self.rows = 0
        self.handle = net.register_forward_pre_hook(self._count)

    def _count(self, module, args):
        self.calls += 1
        self.rows += args[0].shape[0]


# ---- sections ------------------------------------------------------------------------------------------
def bench_flops(s, device):
    """Counted FLOPs of one NCSN++ forward and the achieved FLOP/s vs a matmul in the same run."""
    from torch.utils.flop_counter import FlopCounterMode
    rows = []
    for backbone in s["flops_backbones"]:
        model = build_model(backbone, device=device).eval()
        batch = random_batch(model, 1, s["flops_frames"], device)
        t = torch.full((1,), 0.5, device=device)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model.dnn(batch["x"], batch["y"], t)
        flops = counter.get_total_flops()
        before = matmul_flops_per_s(device)
        with torch.no_grad():
            tm = timed(lambda: model.dnn(batch["x"], batch["y"], t), device, repeats=s["repeats"])
        after = matmul_flops_per_s(device)
        achieved = flops / tm["median_s"]
        rows.append({"backbone": backbone, "input": f"1x256x{s['flops_frames']}", "gflop": flops / 1e9,
                     "forward_s": tm["median_s"], "achieved_gflops": achieved / 1e9,
                     "matmul_gflops": (before + after) / 2e9, "fraction_of_matmul": 2 * achieved / (before + after),
                     "cpu_per_wall": tm["cpu_per_wall"]})
    return rows


def _train_step(model, opt, batch):
    loss = model._loss(batch)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def bench_train(s, device):
    _limit_malloc_caching()  # for peak_memory; the step times then include the page faults it costs
    rows = []
    for backbone in s["backbones"]:
        for encoder in encoder_names():
            try:
                model = build_model(backbone, encoder, device).train()
            except Exception as err:  # an encoder needing what this machine lacks (e.g. local weights)
                while err.__cause__ is not None:  # Hydra wraps it: the root cause names the missing file
                    err = err.__cause__
                rows.append({"backbone": backbone, "encoder": encoder, "skipped": f"{type(err).__name__}: {err}"[:160]})
                continue
            batch = random_batch(model, s["train_batch"], s["train_frames"], device)
            opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
            _train_step(model, opt, batch)  # warm-up (Adam's state exists from here on)
            with peak_memory(device) as mem:
                _train_step(model, opt, batch)
            tm = timed(lambda: _train_step(model, opt, batch), device, repeats=s["repeats"], warmup=0)
            rows.append({"backbone": backbone, "encoder": encoder,
                         "batch": f"{s['train_batch']}x{s['train_frames']}", "step_s": tm["median_s"],
                         "peak_mib": mem["peak_mib"], "cpu_per_wall": tm["cpu_per_wall"]})
            del model, opt
    return rows


def _sampler_models(backbone, device):
    """One conditional model per SDE the registered samplers need (encoder cnn, so w = 3 means something).
    The SDE and sampler are always named: the configs' defaults (the demo's) may pair another SDE."""
    from sgmse_nc.diffusion.sampling import SAMPLERS
    models = {}
    for name, sampler in SAMPLERS.items():
        sde = "ouve" if sampler.sdes is None or "ouve" in sampler.sdes else sampler.sdes[0]
        if sde not in models:  # conf/sde/<sde>.yaml brings its loss; conf/sampler/<name>.yaml exists per sampler
            models[sde] = build_model(backbone, "cnn", device, [f"sde={sde}", f"sampler={name}"]).eval()
        yield name, sampler, models[sde]


def bench_sampling(s, device):
    """Evaluations per utterance (counted on the sampling backbone) x network time per evaluation."""
    from sgmse_nc.enhance.core import enhance
    rows = []
    net_time = {}  # (backbone, frames, rows) -> seconds per network call
    for seconds in s["sampling_seconds"]:
        n = int(seconds * SAMPLE_RATE)
        noisy, ref = [0.1 * torch.randn(n)], [0.1 * torch.randn(SAMPLE_RATE)]
        for name, sampler, model in _sampler_models(s["sampling_backbone"], device):
            for w in (1.0, 3.0):
                counter = CountCalls(model.dnn)
                start = time.perf_counter()
                N = s.get("sampling_N") or sampler.default_N  # smoke: fewer steps, the same code
                enhance(model, noisy, ref, batch_size=1, guidance_scale=w, name=name, N=N)
                wall = time.perf_counter() - start
                counter.handle.remove()
                row = {"sampler": name, "N": N, "w": w, "seconds": seconds,
                       "evaluations": counter.calls, "rows_per_evaluation": counter.rows / counter.calls,
                       f"rtf_{s['sampling_backbone']}": wall / seconds}
                for backbone in s["rtf_backbones"]:
                    frames = -(-(n // 128 + 1) // 64) * 64
                    key = (backbone, frames, int(row["rows_per_evaluation"]))
                    if key not in net_time and seconds <= s["rtf_max_seconds"]:
                        net = build_model(backbone, "cnn", device).eval()
                        b = random_batch(net, key[2], frames, device)
                        cond = net.encode(b["r"], b["r_wav"])
                        t = torch.full((key[2],), 0.5, device=device)
                        with torch.no_grad():
                            net_time[key] = timed(lambda: net(b["x"], b["y"], t, cond), device, repeats=1)["median_s"]
                    if key in net_time:
                        row[f"eval_s_{backbone}"] = net_time[key]
                        row[f"rtf_{backbone}"] = counter.calls * net_time[key] / seconds
                rows.append(row)
    return rows


def bench_memory(s, device):
    """Peak memory of enhance() vs the file's length, with enhance()'s default chunking."""
    from sgmse_nc.enhance.core import enhance
    _limit_malloc_caching()
    model = build_model(s["sampling_backbone"], "cnn", device).eval()
    chunk_default = inspect.signature(enhance).parameters["chunk_seconds"].default
    rows = []
    ref = [0.1 * torch.randn(SAMPLE_RATE)]
    enhance(model, [0.1 * torch.randn(SAMPLE_RATE)], ref, N=2)  # warm-up
    for seconds in s["memory_seconds"]:
        noisy = [0.1 * torch.randn(int(seconds * SAMPLE_RATE))]
        with peak_memory(device) as mem:
            enhance(model, noisy, ref, N=2)
        rows.append({"seconds": seconds, "peak_mib": mem["peak_mib"], "chunk_seconds_default": chunk_default,
                     "backbone": s["sampling_backbone"]})
    return rows


def _save_checkpoint(model, path: Path):
    import pytorch_lightning as pl
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, max_steps=0)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(str(path))


def _network_seconds_per_item(model, batch: int, frames: int, device, repeats: int) -> float:
    """CPU (or GPU wall) seconds of one network evaluation per batch item, at this batch size and length."""
    b = random_batch(model, batch, frames, device)
    cond = model.encode(b["r"], b["r_wav"])
    t = torch.full((batch,), 0.5, device=device)
    with torch.no_grad():
        model(b["x"], b["y"], t, cond)  # warm-up
        _sync(device)
        start = time.process_time() if device == "cpu" else time.perf_counter()
        for _ in range(repeats):
            model(b["x"], b["y"], t, cond)
        _sync(device)
        spent = (time.process_time() if device == "cpu" else time.perf_counter()) - start
    return spent / repeats / batch


def bench_folder(s, device):
    """enhance_folder on a folder of mixed-length files: batch 1 vs batched (the same files, fresh output
    folders, interleaved), the largest output difference in int16 steps, and why: the network's time per batch
    item at batch 1 vs batched, for a short and a long file."""
    import soundfile as sf

    from sgmse_nc.audio import write_audio
    from sgmse_nc.enhance.folder import EnhanceOptions, enhance_folder
    batch = s["folder_batch"]
    lengths = [s["folder_seconds"][i % len(s["folder_seconds"])] for i in range(s["folder_files"])]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = tmp / "model.ckpt"
        model = build_model(s["sampling_backbone"], "cnn")
        _save_checkpoint(model, ckpt)
        g = torch.Generator().manual_seed(0)
        for sub in ("noisy", "ref"):
            (tmp / sub).mkdir()
            for i, seconds in enumerate(lengths):
                write_audio(tmp / sub / f"f{i:02d}.wav", 0.1 * torch.randn(int(seconds * SAMPLE_RATE), generator=g),
                            SAMPLE_RATE)
        times, cpu_times = {}, {}  # CPU time too: on a shared machine wall time mostly measures the others
        for rnd, batch_size in enumerate([1, batch, 1, batch][: 2 * s["folder_rounds"]]):
            start, cpu = time.perf_counter(), time.process_time()
            enhance_folder(ckpt, tmp / "noisy", tmp / f"out{rnd}", EnhanceOptions(
                device=device, batch_size=batch_size, sampler={"N": s["folder_N"]}), ref_dir=tmp / "ref")
            times.setdefault(batch_size, []).append(time.perf_counter() - start)
            cpu_times.setdefault(batch_size, []).append(time.process_time() - cpu)
        lsb = max(int(abs(sf.read(tmp / "out0" / f.name, dtype="int16")[0].astype(int)
                          - sf.read(tmp / "out1" / f.name, dtype="int16")[0].astype(int)).max())
                  for f in (tmp / "noisy").iterdir())
        one, batched = min(times[1]), min(times[batch])
        row = {"files": s["folder_files"], "seconds": "/".join(f"{x:g}" for x in s["folder_seconds"]),
               "N": s["folder_N"], "batch1_s": one, f"batch{batch}_s": batched,
               "files_per_s_batch1": s["folder_files"] / one, "files_per_s_batched": s["folder_files"] / batched,
               "speedup": one / batched, "cpu_speedup": min(cpu_times[1]) / min(cpu_times[batch]),
               "max_int16_diff": lsb}
        model = model.to(device).eval()
        for seconds in (min(s["folder_seconds"]), max(s["folder_seconds"])):
            frames = -(-(int(seconds * SAMPLE_RATE) // 128 + 1) // 64) * 64
            per_item = {b: _network_seconds_per_item(model, b, frames, device, s["repeats"]) for b in (1, batch)}
            row[f"net_per_item_b{batch}_vs_b1_{frames}f"] = per_item[batch] / per_item[1]
        rows.append(row)
    return rows


class _Loss(torch.nn.Module):
    """The model's training loss as a forward, so DDP sees (and synchronises) the whole step."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, batch):
        return self.model._loss(batch)


def _ddp_worker(rank, world, port, s, queue):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    model = build_model(s["sampling_backbone"], "cnn").train()
    ddp = DistributedDataParallel(_Loss(model))
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    batch = random_batch(model, s["train_batch"], s["train_frames"])

    def step():
        loss = ddp(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    tm = timed(step, repeats=s["ddp_steps"])
    dist.barrier()
    if rank == 0:
        queue.put(tm)
    dist.destroy_process_group()


def bench_ddp(s, device):
    import socket
    import torch.multiprocessing as mp
    rows = []
    for world in (1, 2):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        ctx = mp.get_context("spawn")
        queue = ctx.SimpleQueue()
        mp.start_processes(_ddp_worker, args=(world, port, s, queue), nprocs=world, start_method="spawn")
        tm = queue.get()
        rows.append({"processes": world, "step_s": tm["median_s"],
                     "samples_per_s": world * s["train_batch"] / tm["median_s"], "cpu_per_wall": tm["cpu_per_wall"]})
    rows[1]["speedup"] = rows[1]["samples_per_s"] / rows[0]["samples_per_s"]
    return rows


SIZES = {
    "quick": dict(flops_backbones=["ncsnpp_small"], flops_frames=64, backbones=["ncsnpp_tiny"], train_batch=2,
                  train_frames=64, repeats=2, sampling_backbone="ncsnpp_tiny", sampling_seconds=[1.0],
                  rtf_backbones=["ncsnpp_tiny"], rtf_max_seconds=1.0, memory_seconds=[1, 4, 15],
                  folder_files=8, folder_seconds=[0.6, 1.0, 1.6, 2.1], folder_batch=4, folder_N=2, folder_rounds=2,
                  ddp_steps=2),
    "default": dict(flops_backbones=["ncsnpp"], flops_frames=256, backbones=["ncsnpp_tiny", "ncsnpp_small"],
                    train_batch=2, train_frames=256, repeats=3, sampling_backbone="ncsnpp_tiny",
                    sampling_seconds=[4.0, 60.0], rtf_backbones=["ncsnpp_tiny", "ncsnpp"], rtf_max_seconds=4.0,
                    memory_seconds=[1, 4, 15, 30, 60], folder_files=32,
                    folder_seconds=[1.0, 1.6, 2.1, 2.5, 3.2, 4.0, 5.5, 8.0], folder_batch=4, folder_N=5,
                    folder_rounds=2, ddp_steps=3),
}
SIZES["full"] = {**SIZES["default"], "backbones": ["ncsnpp_tiny", "ncsnpp_small", "ncsnpp"]}
SIZES["smoke"] = {**SIZES["quick"], "flops_backbones": ["ncsnpp_tiny"], "train_frames": 32, "repeats": 1,
                  "memory_seconds": [1], "folder_files": 3, "folder_seconds": [0.6, 1.0], "folder_batch": 2,
                  "folder_rounds": 1, "sampling_N": 2, "ddp_steps": 1}


def _print_table(title: str, rows: list[dict]):
    print(f"\n== {title}")
    if not rows:
        return
    cols = list(dict.fromkeys(k for r in rows for k in r))
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else ("-" if v is None else str(v))  # noqa: E731
    cells = [[fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print("  ".join(c.rjust(w) for c, w in zip(cols, widths)))
    for row in cells:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes: a couple of minutes")
    p.add_argument("--smoke", action="store_true", help="the smallest sizes (the test suite's check)")
    p.add_argument("--full", action="store_true", help="also train the 65 M-parameter NCSN++ (minutes per step)")
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (1: fair on a shared machine)")
    p.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench" / "bench.json")
    args = p.parse_args(argv)
    size = "smoke" if args.smoke else "quick" if args.quick else "full" if args.full else "default"
    s = dict(SIZES[size])
    torch.set_num_threads(args.threads)
    info = {"size": size, "device": args.device, "threads": args.threads, "torch": torch.__version__,
            "cpu_count": os.cpu_count(), "load_average": os.getloadavg(), "platform": platform.platform(),
            "settings": s}
    print(f"bench ({size}): torch {torch.__version__}, device {args.device}, {args.threads} thread(s), "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    results = {"info": info}
    for section in SECTIONS:
        if section in args.only:
            start = time.perf_counter()
            results[section] = globals()[f"bench_{section}"](s, args.device)
            _print_table(f"{section} ({time.perf_counter() - start:.0f} s)", results[section])
    from sgmse_nc.io import write_json
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, results)
    print(f"\nwrote {args.out}")
    return results


if __name__ == "__main__":
    main()
