"""Bad input for train / evaluate / prepare: one `error:` line with status 2 naming the files and the fix, found
before any work; evaluation turns unusable files into NaN rows with the reason instead of aborting."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from sgmse_nc.errors import UserError
from tests.helpers import REPO_ROOT

ROOT = REPO_ROOT


def run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True)


def error_line(out: subprocess.CompletedProcess) -> str:
    lines = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode == 2 and len(lines) == 1, out.stdout[-2000:] + out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    return lines[0]


def write(path: Path, seconds: float = 0.5, rate: int = 16000, seed: int = 0, data=None, subtype="PCM_16"):
    path.parent.mkdir(parents=True, exist_ok=True)
    if data is None:
        data = 0.1 * np.random.default_rng(seed).standard_normal(int(seconds * rate))
    sf.write(path, data, rate, subtype=subtype)
    return path


def vb_layout(root: Path, rate: int = 16000, n: int = 2) -> Path:
    for subset in ("train", "valid", "test"):
        for i in range(n):
            for kind in ("clean", "noisy", "noise_ref"):
                write(root / subset / kind / f"p{i}.wav", 0.5, rate, seed=i)
    return root


def test_training_on_48k_and_corrupt_files_stops_at_setup_with_every_file_named(tmp_path):
    data = vb_layout(tmp_path / "data" / "vbdmd", rate=48000)
    (data / "train" / "noisy" / "p1.wav").write_bytes(b"RIFF\x00\x00 corrupt")
    out = run("train.py", "data=vbdmd", f"paths.data_dir={tmp_path / 'data'}", f"hydra.run.dir={tmp_path / 'run'}",
              "debug=tiny", "data.train.reference=noise_ref_dir")
    line = error_line(out)
    # train + valid (clean, noisy, noise_ref x 2); the test split is built (and scanned) only with test_after_fit
    assert "12 of 12 input file(s) cannot be used, training was not started" in line
    assert "sample rate 48000 Hz, 16000 Hz is needed" in line and "python -m sgmse_nc.data.prepare vbdmd" in line
    assert "train/noisy/p1.wav" in line and "cannot be read as audio" in line
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_scan_is_cached_by_size_and_mtime(tmp_path, monkeypatch):
    import sgmse_nc.data.scan as scan
    from sgmse_nc.data.paired import PairedFolderDataset

    root = vb_layout(tmp_path / "vb", n=3)
    dataset = PairedFolderDataset(root, "train")
    assert scan.scan_paired(dataset) == ([], 9)  # clean, noisy and noise_ref files
    assert (root / scan.CACHE_FILE).is_file()
    calls = []
    real = scan.check_audio_files
    monkeypatch.setattr(scan, "check_audio_files", lambda paths, req: calls.append(list(paths)) or real(paths, req))
    assert scan.scan_paired(dataset) == ([], 9) and calls == []  # nothing re-read
    write(root / "train" / "noisy" / "p2.wav", 0.4, seed=9)  # replaced: another length than its clean file
    problems, _ = scan.scan_paired(dataset)
    assert calls == [[root / "train" / "noisy" / "p2.wav"]]
    assert [p.path.name for p in problems] == ["p2.wav"] and "6400 samples but its clean file has 8000" in problems[0].what
    dm = type("DM", (), {"train_set": dataset, "valid_set": None, "test_set": None})()
    with pytest.raises(UserError, match="1 of 9 input file.*training was not started.*p2.wav"):
        scan.scan_datamodule(dm)


def test_evaluate_turns_nan_and_unreadable_files_into_nan_rows(tmp_path):
    clean, enhanced = tmp_path / "clean", tmp_path / "enhanced"
    for i in range(3):
        write(clean / f"u{i}.wav", 1.0, seed=i)
        write(enhanced / f"u{i}.wav", 1.0, seed=i)
    write(enhanced / "u1.wav", data=np.full(16000, np.nan), subtype="FLOAT")
    (enhanced / "u2.wav").write_bytes(b"RIFF\x00\x00 corrupt")
    out = run("evaluate.py", "--enhanced", enhanced, "--clean", clean, "--out", tmp_path / "eval", "--no-plot",
              "--no-estoi")
    assert out.returncode == 0, out.stderr[-3000:]
    rows = pd.read_csv(tmp_path / "eval" / "per_file.csv").set_index("id")
    assert rows.loc["u0", "si_sdr"] > 20
    assert np.isnan(rows.loc["u1", "si_sdr"]) and "NaN or Inf" in rows.loc["u1", "errors"]
    assert np.isnan(rows.loc["u2", "pesq"]) and "cannot be read" in rows.loc["u2", "errors"]
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["enhanced"]["si_sdr"]["n"] == 1


def test_evaluate_and_prepare_print_one_error_line(tmp_path):
    out = run("evaluate.py", "--enhanced", tmp_path / "none", "--clean", tmp_path)
    assert "none" in error_line(out)
    out = run("-m", "sgmse_nc.data.prepare", "vbdmd", "--src", tmp_path / "missing", "--dst", tmp_path / "dst")
    assert "missing: folder not found" in error_line(out)
    out = run("-m", "sgmse_nc.data.prepare", "vbdmd", "--src")
    assert "argument --src: expected one argument" in error_line(out)
