"""Run-level evaluation (python -m sgmse_nc.eval.report): every configured run and w appears, failures are marked,
reruns resume; end to end on a briefly trained demo model (slow)."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from sgmse_nc.enhance import folder as enhancement
from sgmse_nc.eval import folder as evaluation
from sgmse_nc.eval.report import study
from sgmse_nc.eval.report.cli import load_config
from sgmse_nc.eval.report.run import run_report
from tests.helpers import REPO_ROOT

ROOT = REPO_ROOT
SR = 16000


def make_set(folder: Path, speech, n: int = 3, seed: int = 0) -> Path:
    rows = []
    for i in range(n):
        rng = np.random.default_rng(seed * 100 + i)
        clean = speech(1.0, f0=110.0 + 20 * i, seed=seed * 100 + i).numpy()
        noise = 0.03 * rng.standard_normal(2 * len(clean))
        for sub, wav in [("clean", clean), ("noisy", clean + noise[:len(clean)]), ("noise_ref", noise[len(clean):])]:
            (folder / sub).mkdir(parents=True, exist_ok=True)
            sf.write(folder / sub / f"u{i}.wav", wav.astype(np.float32), SR, subtype="FLOAT")
        rows.append({"id": f"u{i}", "snr": [0, 5][i % 2], "noise_type": "white"})
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    return folder


def fake_enhance(ckpt, noisy_dir, out_dir, options, ref_dir=None):
    """Stands in for the model: the 'enhanced' file is the noisy one scaled; w = 3 fails like a crash would."""
    if options.guidance == 3:
        raise RuntimeError("CUDA out of memory (planted)")
    for path in Path(noisy_dir).glob("*.wav"):
        if (Path(out_dir) / path.name).is_file():
            continue  # as enhance_folder: finished files are kept
        wav, sr = sf.read(path)
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        sf.write(Path(out_dir) / path.name, wav * (0.5 if ref_dir is None else 0.9), sr)
    return {}


def test_every_run_and_w_appears_failures_marked_and_reruns_resume(tmp_path, speech, monkeypatch):
    sets = {"in": make_set(tmp_path / "in", speech), "ood": make_set(tmp_path / "ood", speech, seed=1)}
    for name in ("r1", "r2"):
        (tmp_path / name / "checkpoints").mkdir(parents=True)
        (tmp_path / name / "checkpoints" / "last.ckpt").write_bytes(b"")
    monkeypatch.setattr(study, "run_info", lambda ckpt, folder: {"encoder": "cnn", "backbone": "x", "steps": 1})
    monkeypatch.setattr(enhancement, "enhance_folder", fake_enhance)
    cfg = load_config("default", [f"+runs.r1={tmp_path / 'r1'}", f"+runs.r2={tmp_path / 'r2'}",
                                  *[f"+sets.{k}={v}" for k, v in sets.items()], "guidance=[0,1,3]",
                                  f"out_dir={tmp_path / 'rep'}", "score_workers=0", "metrics=[si_sdr]",
                                  "diagnostics.enabled=false"])
    tables = run_report(cfg).tables
    for name in sets:
        rows = [(s["labels"]["run"], s["labels"]["w"], bool(s["error"])) for s in tables[name]["systems"]]
        assert rows == [("r1", "0", False), ("r1", "1", False), ("r1", "3", True),
                        ("r2", "0", False), ("r2", "1", False), ("r2", "3", True)]
        text = (tmp_path / "rep" / name / "comparison.md").read_text()
        assert "| r1 | 3 | FAILED |" in text and "CUDA out of memory (planted)" in text
        assert "| SI-SDR [dB] (16 kHz) |" in text  # the rate the set's files were scored at
        assert text.index("| noisy |") < text.index("| r1 | 0 |")
        # w = 0 is the null condition (no reference); w = 1 used the set's noise_ref
        sys0 = tables[name]["systems"][0]["summary"]["improvement"]["si_sdr"]["mean"]
        assert sys0 == pytest.approx(0.0, abs=1e-3)  # a scaled copy of the noisy input: same SI-SDR
        own = tmp_path / "r1" / "reports" / "rep" / name / "comparison.md"
        assert "| r1 | 1 |" in own.read_text() and "| r2 |" not in own.read_text()
    assert "r2" in (tmp_path / "rep" / "report.md").read_text()
    for png in ("plot_vs_w.png", "plot_snr_r1.png", "spectrograms.png"):
        assert (tmp_path / "rep" / "in" / png).stat().st_size > 1000

    # rerun: the failed condition is retried; every per-file row is reused (nothing is scored again)
    calls = []
    monkeypatch.setattr(enhancement, "enhance_folder",
                        lambda *a, **k: calls.append(a[3].guidance) or fake_enhance(*a, **k))
    monkeypatch.setattr(evaluation, "compute_metrics", lambda *a, **k: pytest.fail("scored a finished file again"))
    run_report(cfg)
    assert calls.count(3) == 4


def test_bad_configuration_is_one_clear_message(tmp_path, speech):
    make_set(tmp_path / "set", speech)
    shutil.rmtree(tmp_path / "set" / "noise_ref")
    code = subprocess.run([sys.executable, "-m", "sgmse_nc.eval.report", f"+runs.a={tmp_path / 'nope'}",
                           f"+sets.s={tmp_path / 'set'}", f"out_dir={tmp_path / 'rep'}"], cwd=ROOT,
                          capture_output=True, text=True)
    assert code.returncode == 2 and "nope not found" in code.stderr and "Traceback" not in code.stderr
    with pytest.raises(study.ReportError, match="lacks noise_ref"):
        study.check_set("s", tmp_path / "set", ["noise_ref"])
    with pytest.raises(study.ReportError, match=r"Set runs\.sgmse_baseline="):
        run_report(load_config("study", ["out_dir=x"]))
    assert list(study.expand_sets({"e": tmp_path})) == ["e"]
    for snr in (10, 0, 5):
        make_set(tmp_path / "esc" / f"snr_{snr}", speech, n=1)
    assert list(study.expand_sets({"e": tmp_path / "esc"})) == ["e_snr_0", "e_snr_5", "e_snr_10"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """A demo model trained for a few steps (the real pipeline: train.py, Hydra, checkpoints)."""
    tmp = tmp_path_factory.mktemp("demo")
    run_dir = tmp / "run"
    out = subprocess.run([sys.executable, "train.py", "experiment=demo", f"paths.data_dir={tmp / 'data'}",
                          f"hydra.run.dir={run_dir}", "+data.prepare.num_train=4", "+data.prepare.num_valid=2",
                          "+data.prepare.num_test=3", "data.batch_size=2", "data.num_eval_files=1", "sampler.N=2",
                          "trainer.max_steps=3", "trainer.check_val_every_n_epoch=100"],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    return run_dir, tmp / "data" / "demo"


@pytest.mark.slow  # trains a tiny model and enhances two sets at two w: ~1-2 min on 2 busy cores
def test_end_to_end_on_a_trained_demo_model(demo_run, tmp_path):
    run_dir, data = demo_run
    args = [sys.executable, "-m", "sgmse_nc.eval.report", f"+runs.demo={run_dir}", f"+sets.test={data / 'test'}",
            f"+sets.valid={data / 'valid'}", "guidance=[0,2]", "references=[noise_ref,oracle_mixed_noise]",
            "sampler.N=2", f"out_dir={tmp_path / 'rep'}", "score_workers=1", "diagnostics.auto=true"]
    out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = (tmp_path / "rep" / "report.md").read_text()
    assert text.startswith("# Evaluation report — ORACLE references")
    assert "3 training steps" in text and "sampler dpm, N=2" in text  # the demo is an SB model (dpm)
    for name, n in (("test", 3), ("valid", 2)):
        saved = json.loads((tmp_path / "rep" / name / "comparison.json").read_text())
        labels = [(s["labels"]["w"], s["labels"]["reference"]) for s in saved["systems"]]
        assert labels == [("0", "null"), ("2", "noise_ref"), ("2", "oracle_mixed_noise"), ("auto", "")]
        assert all(s["summary"]["n_files"] == n and not s["error"] for s in saved["systems"])
        assert "ORACLE" in saved["title"]
        assert (run_dir / "reports" / "rep" / name / "comparison.md").is_file()
    # embedding diagnostics with the run's own encoder: scores for every test file, map, binned improvement
    scores = pd.read_csv(tmp_path / "rep" / "diagnostics" / "demo" / "ood_scores.csv")
    assert sorted(scores.groupby("set").size().items()) == [("test", 3), ("valid", 2)]
    assert (scores["ood_score"] > 0).all()
    diag = (tmp_path / "rep" / "diagnostics" / "demo" / "diagnostics.md").read_text()
    assert "participation_ratio" in diag and "per OOD-score bin" in diag
    # the listening page: per example noisy, w=0, w=2 × 2 references, clean, 2 references; 3 + 2 examples
    page = (tmp_path / "rep" / "report.html").read_text()
    assert page.count("<audio ") == 7 * (3 + 2) and "ORACLE" in page
    assert 'src="diagnostics/demo/embedding_map.png"' in page
    enhanced = tmp_path / "rep" / "work" / "demo" / "test" / "noise_ref_w2" / "enhanced"
    stamps = {p.name: p.stat().st_mtime_ns for p in enhanced.glob("*.wav")}
    assert len(stamps) == 3
    out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)  # resumes: nothing redone
    assert out.returncode == 0 and {p.name: p.stat().st_mtime_ns for p in enhanced.glob("*.wav")} == stamps
