"""bench/run.py runs end to end at the smallest sizes and writes its JSON (figures are never asserted)."""
import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "run.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_run", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # ~15 s of CPU, more on a shared machine
def test_bench_smoke_writes_every_requested_section(tmp_path):
    bench = load_bench()
    out = tmp_path / "bench.json"
    bench.main(["--smoke", "--only", "flops", "train", "--out", str(out)])
    results = json.loads(out.read_text())
    assert {"info", "flops", "train"} <= set(results) and "sampling" not in results
    assert results["flops"][0]["gflop"] > 0 and results["flops"][0]["fraction_of_matmul"] > 0
    # every encoder config shows up (data-driven), each with a time and a memory figure or a reason
    assert [r["encoder"] for r in results["train"]] == bench.encoder_names()
    assert all(r.get("step_s", 0) > 0 or r.get("skipped") for r in results["train"])


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
