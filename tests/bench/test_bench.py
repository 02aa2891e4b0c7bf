"""bench/run.py runs end to end at the smallest sizes and writes its JSON (figures are never asserted)."""
import importlib.util
import json

import pytest
from tests.helpers import REPO_ROOT

BENCH = REPO_ROOT / "bench" / "run.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_run", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_section(tmp_path, section: str) -> tuple[object, list[dict]]:
    """One section of bench/run.py at its smallest size (--smoke), as `make bench` runs it; its rows."""
    bench = load_bench()
    out = tmp_path / "bench.json"
    bench.main(["--smoke", "--only", section, "--out", str(out)])
    results = json.loads(out.read_text())
    assert set(results) == {"info", section}
    return bench, results[section]


def test_bench_flops(tmp_path):
    _, [row] = run_section(tmp_path, "flops")
    assert row["gflop"] > 0 and row["fraction_of_matmul"] > 0


def test_bench_sampling_runs_every_registered_sampler(tmp_path):
    """Each sampler on a model of an SDE it is defined for (the default config's SDE may be another)."""
    from sgmse_nc.diffusion.sampling import SAMPLERS
    _, rows = run_section(tmp_path, "sampling")
    assert [(r["sampler"], r["w"]) for r in rows] == [(name, w) for name in SAMPLERS for w in (1.0, 3.0)]
    assert all(r["evaluations"] > 0 and r["rtf_ncsnpp_tiny"] > 0 for r in rows)
    assert {r["rows_per_evaluation"] for r in rows if r["w"] == 3.0} == {2}  # conditional + null rows


def test_bench_folder_compares_batched_with_single(tmp_path):
    _, [row] = run_section(tmp_path, "folder")
    assert row["files_per_s_batch1"] > 0 and row["files_per_s_batched"] > 0 and row["cpu_speedup"] > 0
    assert row["max_int16_diff"] <= 1  # batching changes float kernels' rounding, never the results
    assert all(v > 0 for k, v in row.items() if k.startswith("net_per_item"))


def test_bench_train_lists_every_encoder(tmp_path):
    bench, rows = run_section(tmp_path, "train")
    # every encoder config shows up (data-driven), each with a time and a memory figure or the reason it is
    # skipped (here: the pre-trained towers' weight files, which are never downloaded)
    assert [r["encoder"] for r in rows] == bench.encoder_names()
    assert all(r.get("step_s", 0) > 0 or "weights not found" in r["skipped"] for r in rows)


def test_bench_memory(tmp_path):
    _, [row] = run_section(tmp_path, "memory")
    assert row["seconds"] == 1 and (row["peak_mib"] is None or row["peak_mib"] >= 0)


def test_bench_ddp_trains_with_two_processes(tmp_path):
    """As a command: the spawned workers import bench/run.py by its path, which a test's loaded copy lacks."""
    import subprocess
    import sys
    out = tmp_path / "bench.json"
    subprocess.run([sys.executable, str(BENCH), "--smoke", "--only", "ddp", "--out", str(out)], check=True,
                   cwd=REPO_ROOT, timeout=600)
    rows = json.loads(out.read_text())["ddp"]
    assert [r["processes"] for r in rows] == [1, 2] and all(r["samples_per_s"] > 0 for r in rows)


def test_every_section_has_a_test():
    assert set(load_bench().SECTIONS) == {name.split("_")[2] for name in globals() if name.startswith("test_bench_")}


def test_peak_memory_sees_a_large_allocation():
    bench = load_bench()
    bench._limit_malloc_caching()
    with bench.peak_memory() as mem:
        block = torch_ones_mib(64)
        del block
    assert mem["peak_mib"] is None or mem["peak_mib"] > 48  # None where /proc/self/clear_refs is missing


def torch_ones_mib(mib: int):
    import torch
    return torch.ones(mib * 2**20 // 4)


def test_sampler_quality_counts_evaluations_per_utterance(tmp_path, monkeypatch):
    """Files of unequal lengths fall into separate batches: evaluations per utterance must still be N (Euler
    ODE) and 2N - 1 (Heun), not calls per nominal batch."""
    import sys

    import torch

    from sgmse_nc.audio import write_audio
    bench = load_bench()
    ckpt = tmp_path / "model.ckpt"
    bench._save_checkpoint(bench.build_model("ncsnpp_tiny", "cnn", extra=["sde=ouve", "sampler=ode"]), ckpt)
    g = torch.Generator().manual_seed(0)
    for sub in ("noisy", "clean", "noise_ref"):
        (tmp_path / sub).mkdir()
        for i, seconds in enumerate((1.0, 1.4, 2.1)):
            write_audio(tmp_path / sub / f"f{i}.wav", 0.1 * torch.randn(int(seconds * 16000), generator=g), 16000)
    spec = importlib.util.spec_from_file_location("sampler_quality", BENCH.parent / "sampler_quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "rows.json"
    monkeypatch.setattr(sys, "argv", ["sampler_quality.py", "--ckpt", str(ckpt), "--data", str(tmp_path),
                                      "--batch-size", "2", "--json", str(out), "ode:N=3", "heun:N=3"])
    module.main()
    rows = json.loads(out.read_text())
    assert [(r["setting"], r["nfe"]) for r in rows] == [("noisy input", 0), ("ode:N=3", 3), ("heun:N=3", 5)]
    assert all(r["pesq"] > 0 for r in rows)


def test_profile_by_kind_sorts_ncsnpp_operations():
    """The reference comparison's breakdown puts each NCSN++ operation in its kind, in forward and backward,
    and counts the 3x3 convolutions' FLOPs from their shapes."""
    import torch
    from torch import nn

    from sgmse_nc.nets.layers import conv1x1, conv3x3, group_norm
    from sgmse_nc.nets.resample import Resample
    spec = importlib.util.spec_from_file_location("ncsnpp_vs_reference", BENCH.parent / "ncsnpp_vs_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    net = nn.Sequential(conv3x3(4, 8), group_norm(8), nn.SiLU(), Resample(up=False), conv1x1(8, 8))
    x = torch.randn(2, 4, 32, 16, requires_grad=True)
    by_kind, flops = module.profile_by_kind(lambda: net(x).square().sum().backward())
    assert set(by_kind) == set(module.KINDS)
    assert flops == 2 * 2 * 8 * 32 * 16 * 4 * 9  # counted from the 3x3 convolution's shapes
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as prof:
        net(x).square().sum().backward()
    seen = {module.kind_of(event.name, event.input_shapes) for event in prof.events()}
    assert {"3x3 conv", "FIR resampling", "1x1 conv / matmul", "GroupNorm", "activation", "elementwise"} <= seen
    assert module.kind_of("aten::convolution_backward", [[2, 8, 16, 8], [2, 8, 32, 16], [8, 1, 4, 4]]) \
        == "FIR resampling"
    assert module.kind_of("aten::mkldnn_convolution", [[2, 8, 32, 16], [8, 8, 1, 1], [8]]) == "1x1 conv / matmul"


def test_nhwc_precision_compares_every_call_on_a_checkpoint(tmp_path):
    import torch

    from sgmse_nc.audio import write_audio
    bench = load_bench()
    ckpt = tmp_path / "model.ckpt"
    bench._save_checkpoint(bench.build_model("ncsnpp_tiny", "cnn", extra=["sde=ouve", "sampler=ode"]), ckpt)
    g = torch.Generator().manual_seed(0)
    for sub in ("noisy", "noise_ref"):
        (tmp_path / sub).mkdir()
        write_audio(tmp_path / sub / "a.wav", 0.1 * torch.randn(16000, generator=g), 16000)
    spec = importlib.util.spec_from_file_location("nhwc_precision", BENCH.parent / "nhwc_precision.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    group_norm = torch.nn.functional.group_norm
    for extra in ([], ["--nchw-groupnorm"]):
        [row] = module.main(["--ckpt", str(ckpt), "--data", str(tmp_path), "--N", "3", *extra])
        assert row["calls"] == 3 and 0 < row["max_rel_diff"] < 1e-4  # NHWC kernels round differently, a little
    assert torch.nn.functional.group_norm is group_norm  # the NCHW GroupNorm patch is undone


def test_groupnorm_nhwc_variants_are_precise_where_they_claim():
    """The exact NHWC variants match a float64 GroupNorm at NCHW's precision; NHWC native is the imprecise one."""
    spec = importlib.util.spec_from_file_location("groupnorm_nhwc", BENCH.parent / "groupnorm_nhwc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = {r["variant"]: r for r in module.main(["--shape", "1", "64", "32", "32", "--repeats", "1"])}
    assert set(rows) == {"nchw native", "nhwc native", "nhwc var_mean", "nhwc shifted"}
    assert rows["nchw native"]["rel_error"] < 1e-6 and rows["nhwc var_mean"]["rel_error"] < 1e-6
    assert all(r["cpu_ms"] >= 0 for r in rows.values())


@pytest.mark.slow  # 6 cells per variant incl. float16 on the CPU: 20+ min on the shared 2-core box
def test_gpu_bench_smoke_on_cpu_prints_one_json(tmp_path):
    """bench/gpu.py at its tiny size on the CPU (eager cells; compiled == eager is tests/nets/test_compile.py)."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, str(REPO_ROOT / "bench" / "gpu.py"), "--smoke", "--device", "cpu",
                          "--no-compile", "--budget-s", "1e9", "--out", str(tmp_path / "gpu.json")],
                         capture_output=True, text=True, timeout=1200, env={**__import__("os").environ,
                                                                             "PYTHONPATH": str(REPO_ROOT)})
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    assert result == json.loads((tmp_path / "gpu.json").read_text())
    cells = {(r["variant"], r["precision"], r["channels_last"]) for r in result["train"]}
    assert cells == {(v, p, cl) for v in ("ncsnpp", "clap_frozen", "xattn") for p in ("32", "bf16-mixed", "16-mixed")
                     for cl in (False, True)}
    assert all(r.get("step_s", 0) > 0 and r["loss_finite"] for r in result["train"]), result["train"]
    assert result["enhance"]["rtf"] > 0 and result["info"]["effective_batch"] == 1
