"""The README's flow end to end on a tiny synthetic corpus: train.py (Hydra) -> enhance.py -> evaluate.py."""
import json
import math
import subprocess
import sys

import pytest
import soundfile as sf
import torch

from sgmse_nc.eval.metrics import si_sdr
from tests.helpers import REPO_ROOT

ROOT = REPO_ROOT


def run(*args, cwd=ROOT):
    out = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def test_train_resume_enhance_evaluate(tmp_path):
    data, run_dir = tmp_path / "data", tmp_path / "run"
    common = ["train.py", "experiment=demo", "debug=tiny", f"paths.data_dir={data}", f"hydra.run.dir={run_dir}",
              "+data.prepare.num_train=4", "+data.prepare.num_valid=2", "+data.prepare.num_test=3",
              "trainer.max_epochs=10", "ckpt_path=auto"]
    run(*common, "trainer.max_steps=2")
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    assert ckpt.is_file() and (run_dir / "config.yaml").is_file()
    assert torch.load(ckpt, weights_only=False)["global_step"] == 2
    # Hydra's record of the run, written by the task under the run folder's lock (sgmse_nc.train.run)
    assert "trainer.max_steps=2" in (run_dir / ".hydra" / "overrides.yaml").read_text()
    assert "experiment_name: demo" in (run_dir / ".hydra" / "config.yaml").read_text()
    assert "run:" in (run_dir / ".hydra" / "hydra.yaml").read_text()
    metrics = (run_dir / "csv").rglob("metrics.csv")
    assert any("valid_si_sdr" in m.read_text() for m in metrics)

    run(*common, "trainer.max_steps=4")  # same run folder: resumes from last.ckpt
    assert torch.load(ckpt, weights_only=False)["global_step"] == 4

    test = data / "demo" / "test"
    enhanced = tmp_path / "enhanced"
    run("enhance.py", "--ckpt", str(ckpt), "--noisy", str(test / "noisy"), "--ref-dir", str(test / "noise_ref"),
        "--out", str(enhanced), "--N", "2", "--guidance", "1.5")
    for noisy in (test / "noisy").glob("*.wav"):
        assert sf.info(enhanced / noisy.name).frames == sf.info(noisy).frames
    args = ["enhance.py", "--ckpt", str(ckpt), "--noisy", str(test / "noisy"), "--ref-dir", str(test / "noise_ref"),
            "--out", str(enhanced), "--N", "2", "--guidance", "1.5"]
    assert "3 already done" in run(*args).stdout  # a rerun resumes: nothing to redo
    other = subprocess.run([sys.executable, *args[:-1], "2.0"], cwd=ROOT, capture_output=True, text=True)
    assert other.returncode == 2 and "guidance_scale" in other.stderr  # never mixes outputs of other settings

    out = tmp_path / "eval"
    run("evaluate.py", "--enhanced", str(enhanced), "--clean", str(test / "clean"), "--noisy", str(test / "noisy"),
        "--out", str(out))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_files"] == 3
    for metric in ("pesq", "estoi", "si_sdr"):
        for signal in ("enhanced", "noisy", "improvement"):
            assert summary[signal][metric]["n"] == 3 and math.isfinite(summary[signal][metric]["mean"])
    # the table's SI-SDR is the mean of the files' SI-SDR, computed here independently
    files = sorted((test / "clean").glob("*.wav"))
    own = [float(si_sdr(sf.read(enhanced / f.name)[0], sf.read(f)[0])) for f in files]
    assert summary["enhanced"]["si_sdr"]["mean"] == pytest.approx(sum(own) / len(own), abs=1e-6)
    assert (out / "summary.md").read_text().count("±") >= 3

