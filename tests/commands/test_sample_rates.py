"""Any sample rate end to end: a tiny training step, enhancement and evaluation on fake 48 and 24 kHz corpora
(the demo corpus written at that rate); the rate reaches the checkpoint, enhanced files come back at the input's
rate and length, and the evaluation says at which rate each metric was computed."""
import json
import subprocess
import sys

import pytest
import soundfile as sf
import torch

from sgmse_nc.eval.metrics import si_sdr
from sgmse_nc.spec import RATE_DEFAULTS
from tests.helpers import REPO_ROOT


def run(*args, expect=0):
    out = subprocess.run([sys.executable, *map(str, args)], cwd=REPO_ROOT, capture_output=True, text=True)
    assert out.returncode == expect, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def train_tiny(tmp_path, rate: int):
    """Two training steps of the tiny demo model on a demo corpus written at `rate`; the checkpoint's path."""
    data, run_dir = tmp_path / "data", tmp_path / "run"
    run("train.py", "experiment=demo", f"spec={rate // 1000}k", f"paths.data_dir={data}", f"hydra.run.dir={run_dir}",
        f"+data.prepare.sample_rate={rate}", "+data.prepare.num_train=2", "+data.prepare.num_valid=1",
        "+data.prepare.num_test=2", "data.batch_size=2", "data.num_eval_files=0", "data.train.num_frames=16",
        "trainer.max_steps=2", "trainer.check_val_every_n_epoch=1000", "ckpt_path=auto")
    return run_dir / "checkpoints" / "last.ckpt", data / "demo" / "test"


@pytest.mark.parametrize("rate", [48000, pytest.param(24000, marks=pytest.mark.slow)])
def test_train_enhance_evaluate_at_the_corpus_rate(tmp_path, rate):
    ckpt, test = train_tiny(tmp_path, rate)
    spec = torch.load(ckpt, weights_only=True)["hyper_parameters"]["spec"]
    assert spec == {"_target_": "sgmse_nc.spec.Spectrogram", "sample_rate": rate, **RATE_DEFAULTS[rate]}

    enhanced = tmp_path / "enhanced"
    run("enhance.py", "--ckpt", ckpt, "--noisy", test / "noisy", "--ref-dir", test / "noise_ref", "--out", enhanced,
        "--N", "2")
    noisy_files = sorted((test / "noisy").glob("*.wav"))
    assert len(noisy_files) == 2
    for noisy in noisy_files:
        out, own = sf.info(enhanced / noisy.name), sf.info(noisy)
        assert (out.samplerate, out.frames) == (rate, own.frames)

    scores = tmp_path / "eval"
    run("evaluate.py", "--enhanced", enhanced, "--clean", test / "clean", "--out", scores)
    summary = json.loads((scores / "summary.json").read_text())
    assert summary["settings"]["sample_rate"] == rate
    assert summary["settings"]["metric_rates"] == {"pesq": 16000, "estoi": 10000, "si_sdr": rate}
    header = (scores / "summary.md").read_text()
    assert "PESQ (16 kHz WB)" in header and "ESTOI (10 kHz, pystoi)" in header
    assert f"SI-SDR [dB] ({rate // 1000} kHz)" in header
    own = [float(si_sdr(sf.read(enhanced / f.name)[0], sf.read(f)[0])) for f in sorted((test / "clean").glob("*.wav"))]
    assert summary["enhanced"]["si_sdr"]["mean"] == pytest.approx(sum(own) / len(own), abs=1e-6)
