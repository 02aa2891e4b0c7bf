"""A non-finite loss or gradient never reaches the weights, the EMA or a checkpoint: a planted NaN batch is
skipped (no weight, no EMA update), counted and logged with its file ids; K skips in a row stop the run with one
line; every checkpoint is checked before it is written. Through train.py, as a user runs it; DDP (2-process gloo)
and 16-mixed (CPU autocast + gradient scaler) runs are slow."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sgmse_nc.train.checkpoint_io import NonFiniteCheckpoint, SafeCheckpointIO
from sgmse_nc.train.nonfinite import all_finite, grads_finite, nonfinite_tensors
from tests.helpers import REPO_ROOT

ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}


def planted_run(tmp_path, steps, *extra):
    """train.py on the tiny demo model with NaN planted at `steps` and K = 3; returns the process."""
    args = ["train.py", "experiment=demo", f"paths.root_dir={tmp_path}", f"paths.data_dir={tmp_path}/data",
            "+data.prepare.num_train=4", "+data.prepare.num_valid=2", "+data.prepare.num_test=2",
            "data.batch_size=2", "data.num_eval_files=0", "data.train.num_frames=64", "sampler.N=2",
            "trainer.max_epochs=100", "trainer.check_val_every_n_epoch=50", "callbacks.last.every_n_steps=2",
            "callbacks.nonfinite.max_consecutive_skips=3", "hydra.run.dir=" + str(tmp_path / "run"),
            "+callbacks.plant._target_=tests.probes.PlantNonFinite", f"+callbacks.plant.steps={steps}",
            f"+callbacks.plant.path={tmp_path / 'plant.jsonl'}", "+logger.csv.flush_logs_every_n_steps=1",
            "trainer.log_every_n_steps=1", *extra]
    return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, capture_output=True, text=True, env=ENV)


def check_stopped_by_the_guard(tmp_path, out, ranks=(0,)):
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]  # each rank stops
    assert out.returncode == 2 and len(errors) == len(ranks) and "Traceback" not in out.stderr, out.stderr[-4000:]
    line = errors[0]
    assert "3 optimizer steps in a row had a non-finite loss or gradient" in line and "Likely causes" in line
    assert "Files of those batches" in line and "tr0" in line  # the demo corpus's training file ids
    # the isolated NaN (step 1) was skipped, logged with its files, and training went on
    logged = out.stdout + out.stderr
    assert "step 1: non-finite loss or gradient" in logged and "optimizer step skipped" in logged
    planted = [json.loads(x) for x in (tmp_path / "plant.jsonl").read_text().splitlines()]
    assert {(p["rank"], p["step"]) for p in planted} >= {(r, s) for r in ranks for s in (1, 3, 4)}
    assert all(p["weights_same"] and p["ema_same"] and p["ema_updates_same"] for p in planted), planted
    checkpoints = list((tmp_path / "run" / "checkpoints").glob("*.ckpt"))
    assert checkpoints
    for path in checkpoints:
        state = torch.load(path, map_location="cpu", weights_only=False)
        assert nonfinite_tensors({"state_dict": state["state_dict"], "ema": state["ema"]}) == []
        assert state["global_step"] >= 2
    metrics = (tmp_path / "run").rglob("metrics.csv")
    assert any("train_nonfinite_skips" in p.read_text() for p in metrics)


def test_planted_nan_batches_are_skipped_counted_and_stop_the_run(tmp_path):
    out = planted_run(tmp_path, "[1,3,4,5,6,7,8,9]")
    check_stopped_by_the_guard(tmp_path, out)
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["callbacks"]["NonFiniteGuard"]["skipped"] >= 2  # the count survives a resume


def test_checkpoints_with_nan_are_refused_and_the_previous_file_kept(tmp_path):
    io = SafeCheckpointIO()
    path = tmp_path / "last.ckpt"
    good = {"state_dict": {"w": torch.ones(3)}, "ema": {"shadow": {"w": torch.ones(3)}}}
    io.save_checkpoint(good, path)
    bad = {"state_dict": {"w": torch.tensor([1.0, float("nan")])}, "ema": {"shadow": {"w": torch.ones(3)}}}
    with pytest.raises(NonFiniteCheckpoint, match="state_dict.w"):
        io.save_checkpoint(bad, path)
    inf_ema = {"state_dict": {"w": torch.ones(3)}, "ema": {"shadow": {"w": torch.tensor([float("inf")])}}}
    with pytest.raises(NonFiniteCheckpoint, match="ema.shadow.w"):
        io.save_checkpoint(inf_ema, path)
    assert torch.equal(torch.load(path)["state_dict"]["w"], torch.ones(3)) and os.listdir(tmp_path) == ["last.ckpt"]


def test_finite_check_is_exact():
    """The max-abs norm never overflows: large finite float16 values are finite, one NaN or Inf is not."""
    big = torch.full((10000,), 6e4, dtype=torch.float16)  # its 2-norm would overflow float16
    assert bool(all_finite([big, torch.zeros(3)]))
    assert not bool(all_finite([big, torch.tensor([0.0, float("nan")])]))
    assert not bool(all_finite([torch.tensor([float("-inf")], dtype=torch.bfloat16)]))
    assert bool(all_finite([None]))


def test_the_per_step_gradient_check_sees_every_nan_and_inf():
    """The guard's cheap per-step check (a float32 2-norm per gradient): NaN/Inf in any gradient, of any float
    dtype, shows; large float16/bfloat16 gradients do not overflow it; missing gradients are left out."""
    finite = [torch.randn(50, 3), torch.randn(7)]
    assert bool(grads_finite(finite + [None]))
    assert bool(grads_finite([torch.full((10000,), 6e4, dtype=torch.float16)]))  # float16 2-norm: 6e6 > 65504
    for bad in (float("nan"), float("inf"), float("-inf")):
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            grad = torch.zeros(1000, dtype=dtype)
            grad[517] = bad
            assert not bool(grads_finite(finite + [grad])), (bad, dtype)
    assert bool(grads_finite([None])) and bool(grads_finite([]))


@pytest.mark.slow
def test_ddp_ranks_skip_the_same_steps(tmp_path):
    """NaN planted on rank 1 only: both ranks skip (the flag is summed over ranks) and stop together."""
    out = planted_run(tmp_path, "[1,3,4,5,6,7,8,9]", "trainer.devices=2", "+trainer.strategy=ddp",
                      "+callbacks.plant.rank=1")
    check_stopped_by_the_guard(tmp_path, out, ranks=(0, 1))


@pytest.mark.slow
def test_16_mixed_counts_the_scalers_skip(tmp_path):
    """CPU autocast float16 with a gradient scaler: the scaler skips the step itself, the guard counts it (and the
    EMA stays). Lightning turns trainer.precision=16-mixed on a CPU into bf16-mixed (no scaler), so the float16
    plugin and its CPU GradScaler are given as a trainer plugin, as a config may."""
    scaler = "{_target_:torch.amp.GradScaler,device:cpu}"
    out = planted_run(tmp_path, "[1,3,4,5,6,7,8,9]", "trainer.precision=null",
                      "+trainer.plugins=[{_target_:pytorch_lightning.plugins.precision.MixedPrecision,"
                      f"precision:16-mixed,device:cpu,scaler:{scaler}}}]")
    check_stopped_by_the_guard(tmp_path, out)
    assert "float16 overflow (trainer.precision=16-mixed" in out.stderr and "GradScaler" not in out.stderr
