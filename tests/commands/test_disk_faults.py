"""A full or read-only disk through the entry points: the write that fails leaves the previous file whole and no
temporary file behind, the command stops with one `error:` line naming the path and the free space, and the
same command resumes once space is freed. Faults are planted by tests/scripts/with_write_fault.py; where the
machine lets a user namespace mount a tmpfs, a real full disk is used too."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from sgmse_nc.io import is_leftover
from tests.helpers import REPO_ROOT

ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
FAULT = str(REPO_ROOT / "tests" / "scripts" / "with_write_fault.py")


def run(*args):
    return subprocess.run([sys.executable, *map(str, args)], cwd=REPO_ROOT, capture_output=True, text=True, env=ENV)


def one_error_line(out) -> str:
    lines = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode == 2 and len(lines) == 1 and "Traceback" not in out.stderr, out.stderr[-3000:]
    return lines[0]


def no_leftovers(folder):
    return [p for p in folder.rglob("*") if is_leftover(p)] == []


@pytest.fixture
def noisy(tmp_path):
    (tmp_path / "noisy").mkdir()
    for i in range(3):
        wav = 0.1 * np.random.default_rng(i).standard_normal(16000)
        sf.write(tmp_path / "noisy" / f"u{i}.wav", wav, 16000, subtype="PCM_16")
    return tmp_path / "noisy"


@pytest.mark.parametrize("code, said", [("ENOSPC", "no space left on the device"),
                                        pytest.param("EROFS", "read-only", marks=pytest.mark.slow)])
def test_enhance_stops_on_a_refused_write_and_resumes(tiny_ckpt, noisy, tmp_path, code, said):
    out = tmp_path / "out"
    args = ["enhance.py", "--ckpt", tiny_ckpt, "--noisy", noisy, "--out", out, "--N", "2"]
    line = one_error_line(run(FAULT, code, "*.wav", 2, *args))
    assert "cannot be written" in line and said in line and "free there" in line and str(out) in line
    assert len(list(out.glob("*.wav"))) == 1 and no_leftovers(out)  # the first file kept, nothing half-written
    done = run(*args)
    assert done.returncode == 0 and "1 already done" in done.stdout, done.stderr[-2000:]
    assert len(list(out.glob("*.wav"))) == 3


def test_training_keeps_its_last_good_checkpoint_on_a_full_disk(tmp_path):
    train = ["train.py", "experiment=demo", f"paths.root_dir={tmp_path}", f"paths.data_dir={tmp_path}/data",
             "+data.prepare.num_train=4", "+data.prepare.num_valid=2", "+data.prepare.num_test=2",
             "data.batch_size=2", "data.num_eval_files=0", "data.train.num_frames=64", "sampler.N=2",
             "trainer.max_steps=6", "trainer.check_val_every_n_epoch=50", "callbacks.last.every_n_steps=2",
             f"hydra.run.dir={tmp_path / 'run'}"]
    line = one_error_line(run(FAULT, "ENOSPC", "last.ckpt", 2, *train))
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert f"{last}: cannot be written (no space left on the device" in line and "free there" in line
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 2  # the previous one, whole
    assert no_leftovers(last.parent)
    resumed = run(*train)  # space freed: the same command resumes from step 2
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 6


def test_sigkill_during_a_checkpoint_write_leaves_the_previous_one_loadable(tmp_path):
    """Killed (SIGKILL: nothing runs after it) with half of the second last.ckpt written: the first one is whole,
    and the same command resumes from it (the temporary file and the dead process's lock are cleared)."""
    train = ["train.py", "experiment=demo", f"paths.root_dir={tmp_path}", f"paths.data_dir={tmp_path}/data",
             "+data.prepare.num_train=4", "+data.prepare.num_valid=2", "+data.prepare.num_test=2",
             "data.batch_size=2", "data.num_eval_files=0", "data.train.num_frames=64", "sampler.N=2",
             "trainer.max_steps=6", "trainer.check_val_every_n_epoch=50", "callbacks.last.every_n_steps=2",
             f"hydra.run.dir={tmp_path / 'run'}"]
    killed = run(FAULT, "SIGKILL", "last.ckpt", 2, *train)
    assert killed.returncode == -9, killed.stderr[-3000:]
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 2
    assert not no_leftovers(last.parent)  # the torn temporary file is there, beside the whole last.ckpt
    resumed = run(*train)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 6 and no_leftovers(last.parent)


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                            "mount -t tmpfs -o size=64k tmpfs /tmp"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _can_mount_tmpfs(), reason="this machine does not let a user namespace mount a tmpfs")
def test_enhance_on_a_real_full_disk_resumes_once_space_is_freed(tiny_ckpt, noisy, tmp_path):
    """A 48 KiB tmpfs holds the settings record and one 1-second file: libsndfile fails on the second without an
    errno; the free space names the cause. Remounted larger, the same command finishes."""
    out = tmp_path / "out"
    out.mkdir()
    enhance = " ".join(map(str, [sys.executable, "enhance.py", "--ckpt", tiny_ckpt, "--noisy", noisy, "--out", out,
                                 "--N", "2"]))
    script = (f"mount -t tmpfs -o size=48k tmpfs {out} || exit 99; {enhance}; echo rc=$?; "
              f"ls -a {out} > {tmp_path / 'listing'}; mount -o remount,size=2m {out}; {enhance}; echo rc=$?; "
              f"ls {out} >> {tmp_path / 'listing'}")
    done = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script], cwd=REPO_ROOT,
                          capture_output=True, text=True, env=ENV)
    assert done.stdout.count("rc=") == 2, done.stdout + done.stderr[-3000:]
    first, second = [line for line in done.stdout.splitlines() if line.startswith("rc=")]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert first == "rc=2" and len(errors) == 1 and "no space left on the device" in errors[0], done.stderr[-3000:]
    assert "free there" in errors[0] and "Traceback" not in done.stderr
    listing = (tmp_path / "listing").read_text().split()
    assert not [n for n in listing if n.endswith(".tmp.wav")]  # nothing half-written on the full disk
    assert second == "rc=0" and "1 already done" in done.stdout
