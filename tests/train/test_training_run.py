"""Training-run correctness: run folders, resume, EMA timing, checkpoints, signals, DDP seeding and metric
reduction, multirun x DDP. DDP tests are real 2-process gloo runs on CPU (tiny net, a few steps)."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch

from sgmse_nc.train.callbacks import BestCheckpoint
from sgmse_nc.config import build_model_from_config, run_key
from sgmse_nc.data.prepare.demo import ensure_demo_corpus
from sgmse_nc.errors import UserError
from sgmse_nc.train.run import resolve_ckpt_path
from tests.helpers import REPO_ROOT

ROOT = REPO_ROOT
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}


def tiny_train_args(tmp_path, *extra):
    """A train.py command line for a few steps of the demo with the tiny settings on a tiny synthetic corpus
    (validation only where a test asks for it; last.ckpt every 2 steps)."""
    return ["train.py", "experiment=demo", "debug=tiny", f"paths.root_dir={tmp_path}", f"paths.data_dir={tmp_path}/data",
            "+data.prepare.num_train=4", "+data.prepare.num_valid=2", "+data.prepare.num_test=2",
            "data.num_eval_files=0", "trainer.max_epochs=100", "trainer.val_check_interval=null",
            "trainer.check_val_every_n_epoch=50", "callbacks.last.every_n_steps=2", *extra]


def run(args, expect=0, env=ENV):
    out = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, env=env)
    assert out.returncode == expect, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def probe_lines(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


# ---- run folders and resume ---------------------------------------------------------------------------------
def test_run_key_is_stable_flat_and_ignores_what_does_not_change_the_run():
    key = run_key(["seed=2", "model.lr=1e-3", "paths.data_dir=/corpora/vb dmd", "hydra.run.dir=/x",
                   "trainer.max_steps=9", "experiment=demo", "+callbacks.probe.path=/p"],
                  ["experiment", "trainer.max_steps", "callbacks*"])
    assert key == "model.lr=1e-3,paths.data_dir=_corpora_vbdmd,seed=2"
    assert run_key([]) == run_key(["hydra.job.name=train_ddp_process_1"]) == "default"
    long = run_key([f"k{i}=v" for i in range(60)])
    assert len(long) <= 120 and long != run_key([f"k{i}=v" for i in range(61)])


def test_ckpt_path_null_refuses_to_overwrite_a_run(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    assert resolve_ckpt_path("auto", tmp_path) is None
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert resolve_ckpt_path("auto", tmp_path).endswith("last.ckpt")
    with pytest.raises(UserError, match="ckpt_path=auto"):
        resolve_ckpt_path(None, tmp_path)


def test_best_checkpoint_removes_stale_files_on_resume(tmp_path):
    best = BestCheckpoint(dirpath=tmp_path, filename="best-loss-{step:07d}", monitor="valid_loss", save_top_k=1)
    kept, stale = tmp_path / "best-loss-0000010.ckpt", tmp_path / "best-loss-0000020.ckpt"
    for p in (kept, stale, tmp_path / "last.ckpt", tmp_path / "best-pesq-0000020.ckpt"):
        p.write_bytes(b"x")
    best.best_k_models = {str(kept): torch.tensor(1.0)}  # as restored from last.ckpt
    best.on_train_start(SimpleNamespace(is_global_zero=True), None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best-loss-0000010.ckpt", "best-pesq-0000020.ckpt",
                                                           "last.ckpt"]


# ---- EMA ----------------------------------------------------------------------------------------------------
def fake_batches(n, b=2, frames=64, ref_frames=32):
    g = torch.Generator().manual_seed(0)
    c = lambda *s: torch.randn(*s, dtype=torch.complex64, generator=g) * 0.1
    out = []
    for _ in range(n):
        x = c(b, 1, 256, frames)
        out.append({"x": x, "y": x + c(b, 1, 256, frames), "r": c(b, 1, 256, ref_frames),
                    "r_wav": torch.randn(b, 128 * (ref_frames - 1), generator=g) * 0.1, "norm": torch.ones(b)})
    return out


def test_ema_follows_the_weights_after_each_optimizer_step_under_accumulation():
    model = build_model_from_config(["backbone=ncsnpp_tiny", "encoder=cnn"], lr=1e-2)
    start = [p.detach().clone() for p in model.ema._params(model)]
    trainer = pl.Trainer(accelerator="cpu", max_steps=1, accumulate_grad_batches=2, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, train_dataloaders=torch.utils.data.DataLoader(fake_batches(2), batch_size=None))
    assert trainer.global_step == 1 and model.ema.num_updates == 1  # 2 batches, 1 step, 1 update
    decay = 2 / 11  # first update: min(0.999, (1 + 1) / (10 + 1))
    after = model.ema._params(model)
    assert any(not torch.equal(p1, p0) for p1, p0 in zip(after, start))  # the step moved the weights
    for s, p0, p1 in zip(model.ema.shadow, start, after):
        torch.testing.assert_close(s, decay * p0 + (1 - decay) * p1.detach())


@pytest.mark.parametrize("precision", ["bf16-mixed"])
def test_mixed_precision_keeps_the_complex_score_in_float32(precision):
    model = build_model_from_config(["backbone=ncsnpp_tiny", "encoder=cnn"])
    seen = []
    model.dnn.register_forward_hook(lambda m, args, out: seen.append((args[0].dtype, out.dtype)))
    trainer = pl.Trainer(accelerator="cpu", max_steps=1, precision=precision, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, train_dataloaders=torch.utils.data.DataLoader(fake_batches(1), batch_size=None))
    assert seen == [(torch.complex64, torch.complex64)]  # x_t in, score out: complex float32 under autocast
    assert torch.isfinite(trainer.callback_metrics["train_loss"])


# ---- checkpoints independent of validation, interruption ------------------------------------------------------
@pytest.mark.slow
def test_killed_run_resumes_with_its_step_and_ema_and_sigterm_exits_nonzero(tmp_path):
    probe = tmp_path / "probe.jsonl"
    args = tiny_train_args(tmp_path, "trainer.max_steps=6", "+callbacks.probe._target_=tests.probes.RandomnessProbe",
                           f"+callbacks.probe.path={probe}", "callbacks.progress_log.every_seconds=0")
    run(args, expect=-9, env={**ENV, "PROBE_KILL": "KILL:5"})  # SIGKILL after step 5: last.ckpt is step 4's
    folder = tmp_path / "outputs" / "demo"
    (run_dir,) = [p for p in folder.iterdir() if p.is_dir()]  # a stable name: the same command finds it
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 4 and ckpt["ema"]["num_updates"] == 4
    saved_ema = float(sum(s.double().sum() for s in ckpt["ema"]["shadow"].values()))

    out = run(args)  # the same command again: resumes from last.ckpt
    # not a terminal: a progress line per interval (0 s here: every step) with step, loss, speed and ETA
    assert re.search(r"step 6/6  loss \d+\.\d{4}  \d+\.\d\d steps/s  ETA 0m00s", out.stdout + out.stderr)
    (line,) = probe_lines(probe)
    assert line["start"]["step"] == 4 and line["start"]["ema_updates"] == 4
    assert line["start"]["ema_sum"] == pytest.approx(saved_ema, rel=1e-9)
    assert line["end_step"] == 6 and line["ema_updates"] == 6
    files = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert files == ["last.ckpt"], files  # one last.ckpt, no last-v1, no temporary left behind
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 6

    # SIGTERM mid-run: last.ckpt saved at that step, non-zero exit, a resume hint.
    out = run([*args, "trainer.max_steps=12"], expect=143, env={**ENV, "PROBE_KILL": "TERM:9"})
    assert "interrupted by SIGTERM" in out.stderr and "rerun the same command" in out.stderr
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 9


def test_progress_line():
    from sgmse_nc.train.callbacks import progress_line

    assert progress_line(1200, 50000, 0.18344, 600, 200.0) == "step 1200/50000  loss 0.1834  3.00 steps/s  ETA 4h31m"
    assert progress_line(10, -1, None, 10, 5.0) == "step 10  2.00 steps/s"


# ---- DDP ----------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_validation_metrics_over_two_ranks_equal_a_single_process(tmp_path):
    root = ensure_demo_corpus(tmp_path / "demo", num_train=1, num_valid=3, num_test=1)  # 3 files: 2 + 1
    results = []
    for devices in (1, 2):
        out = tmp_path / f"metrics{devices}.json"
        run(["tests/probes.py", str(root), str(devices), str(out)])
        results.append(json.loads(out.read_text()))
    one, two = results
    assert set(one) == {"valid_si_sdr", "valid_estoi"}
    for name in one:
        assert two[name] == pytest.approx(one[name], rel=1e-9, abs=1e-12)


@pytest.mark.slow
def test_multirun_with_ddp_runs_each_point_once_with_distinct_reproducible_rank_randomness(tmp_path):
    probe = tmp_path / "probe.jsonl"
    run(["train.py", "-m", *tiny_train_args(tmp_path)[1:], "trainer.max_steps=3", "trainer.devices=2",
         "+trainer.strategy=ddp", "model.lr=1e-3,2e-3", "model.cond_drop_prob=0.5",
         "+callbacks.probe._target_=tests.probes.RandomnessProbe", f"+callbacks.probe.path={probe}"])
    lines = probe_lines(probe)
    # two sweep points x two ranks, each exactly once (a re-run sweep on rank 1 would add lines)
    assert sorted((line["rank"], line["world"]) for line in lines) == [(0, 2), (0, 2), (1, 2), (1, 2)]
    first, second = lines[:2], lines[2:]
    for job in (first, second):
        r0, r1 = sorted(job, key=lambda line: line["rank"])
        assert len(r0["t"]) == 6 and r0["t"] != r1["t"]  # ranks draw different diffusion times ...
        assert r0["dropped"] != r1["dropped"] or r0["t"] != r1["t"]
        assert len(r0["dropped"]) == 6
    # the same seed reproduces every rank's draws (both points share the seed; lr does not change t, masks)
    by_rank = lambda job: {line["rank"]: (line["t"], line["dropped"]) for line in job}
    assert by_rank(first) == by_rank(second)
    folders = sorted((tmp_path / "outputs" / "demo").iterdir())
    assert len(folders) == 2  # one stable folder per sweep point
    for folder in folders:  # each job's ranks trained in its own folder
        assert torch.load(folder / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 3


# ---- loggers --------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_wandb_offline_and_tensorboard_get_metrics_and_enhanced_examples_without_network(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    unreachable = {"WANDB_MODE": "offline", "WANDB_BASE_URL": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
                   "HTTP_PROXY": "http://127.0.0.1:9", "WANDB_SILENT": "true"}
    args = tiny_train_args(tmp_path, "trainer.max_steps=2", "trainer.check_val_every_n_epoch=1", "logger=many",
                           "data.num_eval_files=1", "callbacks.evaluator.examples_every=1",
                           "callbacks.evaluator.metrics=[si_sdr]", "optimized_metric=valid_si_sdr")
    run(args, env={**ENV, **unreachable})
    (run_dir,) = [p for p in (tmp_path / "outputs" / "demo").iterdir() if p.is_dir()]
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    assert list(offline.glob("run-*.wandb")) and list(offline.rglob("*.wav")) and list(offline.rglob("*.png"))
    (events,) = (run_dir / "tensorboard").rglob("events.out.tfevents.*")
    tags = EventAccumulator(str(events)).Reload().Tags()
    assert any("valid_examples/0/enhanced" in t for t in tags["audio"])
    assert any("spectrogram_enhanced" in t for t in tags["images"])
    assert "valid_si_sdr" in (run_dir / "metrics.json").read_text()
