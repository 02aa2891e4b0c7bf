"""One writer per folder, with real processes: a second process on the same run folder, enhance --out or report
folder is refused at start with one line naming the folder and the other process; the lock of a process that
died (SIGKILL) is taken over; a requeued SLURM job (same SLURM_JOB_ID) takes over its own lock."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from sgmse_nc.lock import LOCK_NAME, FolderBusy, acquire, folder_lock, release
from tests.helpers import REPO_ROOT

ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
HOLD = ("import sys, time\nfrom sgmse_nc.lock import folder_lock\nwith folder_lock(sys.argv[1], sys.argv[2]):\n"
        "    print('held', flush=True)\n    time.sleep(600)\n")


def hold(folder, what, env=ENV) -> subprocess.Popen:
    """Another process holding the folder's lock (as a running command does), once it says so."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), what], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def run(*args, env=ENV):
    return subprocess.run([sys.executable, *map(str, args)], cwd=REPO_ROOT, capture_output=True, text=True, env=env)


def one_error_line(out) -> str:
    lines = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode == 2 and len(lines) == 1 and "Traceback" not in out.stderr, out.stderr[-3000:]
    return lines[0]


def stop(proc):
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.fixture
def noisy(tmp_path):
    (tmp_path / "noisy").mkdir()
    sf.write(tmp_path / "noisy" / "u0.wav", 0.1 * np.random.default_rng(0).standard_normal(16000), 16000)
    return tmp_path / "noisy"


def test_second_enhancement_on_one_out_folder_is_refused_then_takes_a_dead_holders_lock(tiny_ckpt, noisy, tmp_path):
    out = tmp_path / "out"
    holder = hold(out, "enhancement")
    args = ["enhance.py", "--ckpt", tiny_ckpt, "--noisy", noisy, "--out", out, "--N", "1"]
    try:
        line = one_error_line(run(*args))
        assert f"{out} is in use by enhancement (pid {holder.pid} on " in line and "started " in line
        assert not list(out.glob("*.wav"))
    finally:
        stop(holder)  # killed: its lock stays behind, stale
    assert (out / LOCK_NAME).is_file()
    done = run(*args)
    assert done.returncode == 0 and (out / "u0.wav").is_file(), done.stderr[-2000:]
    assert not (out / LOCK_NAME).exists()  # released at the end


def test_second_training_on_one_run_folder_is_refused(tmp_path):
    """Refused before it writes anything, Hydra's record of the first run (.hydra/) and its log included."""
    run_dir = tmp_path / "run"
    holder = hold(run_dir, "training")
    first = {run_dir / ".hydra" / name: f"the first run's {name}\n" for name in
             ("config.yaml", "hydra.yaml", "overrides.yaml")}
    first[run_dir / "train.log"] = "the first run's log\n"
    for path, text in first.items():
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    try:
        line = one_error_line(run("train.py", "experiment=demo", f"paths.root_dir={tmp_path}",
                                  f"paths.data_dir={tmp_path}/data", f"hydra.run.dir={run_dir}", "seed=7"))
        assert f"{run_dir} is in use by training (pid {holder.pid}" in line
        assert not (run_dir / "checkpoints").exists() and not (tmp_path / "data").exists()  # refused at start
        assert {path: path.read_text() for path in first} == first
    finally:
        stop(holder)


def test_second_report_on_one_folder_is_refused(tmp_path):
    holder = hold(tmp_path / "report", "report")
    try:
        line = one_error_line(run("-m", "sgmse_nc.eval.report", f"+runs.a={tmp_path / 'none.ckpt'}",
                                  f"+sets.s={tmp_path}", f"out_dir={tmp_path / 'report'}"))
        assert f"{tmp_path / 'report'} is in use by report (pid {holder.pid}" in line
    finally:
        stop(holder)


def test_requeued_slurm_job_takes_over_its_own_lock(tmp_path):
    env = {**ENV, "SLURM_JOB_ID": "4242"}
    holder = hold(tmp_path, "training", env=env)  # the job's previous incarnation, still shutting down
    try:
        with pytest.raises(FolderBusy):  # another job is refused
            acquire(tmp_path, "training")
        taken = run("-c", "import sys; from sgmse_nc.lock import acquire; print(acquire(sys.argv[1], 'training')"
                    "['pid'])", tmp_path, env=env)
        assert taken.returncode == 0, taken.stderr
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == int(taken.stdout)
    finally:
        stop(holder)


def test_lock_of_this_process_reused_and_a_torn_lock_taken_over(tmp_path):
    with folder_lock(tmp_path, "enhancement") as record:
        assert json.loads((tmp_path / LOCK_NAME).read_text()) == record
    assert not (tmp_path / LOCK_NAME).exists()
    (tmp_path / LOCK_NAME).write_text("{torn")
    record = acquire(tmp_path, "report")
    release(tmp_path, record)
    assert not (tmp_path / LOCK_NAME).exists()
    # a lock of a pid that ended: taken over
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename,
                                                  "started": time.ctime()}))
    release(tmp_path, acquire(tmp_path, "training"))
