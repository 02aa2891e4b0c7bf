"""Comparison tables (evaluate.py --enhanced name=DIR ...): a golden Markdown table on a small synthetic set,
and the rules it follows (noisy first, best in bold, improvement = mean of per-file differences, failures kept)."""
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from sgmse_nc.eval import evaluate
from sgmse_nc.eval import folder as evaluation
from sgmse_nc.eval.comparison import System, compare, markdown

SR = 16000
GOLDEN = Path(__file__).parent / "golden" / "comparison.md"
FILES = {"u1": (5, "hum"), "u2": (10, "hum"), "u3": (5, "hiss"), "u4": (15, "hiss")}  # id -> snr, category


def write(path, wav):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wav.astype(np.float32), SR, subtype="FLOAT")


@pytest.fixture
def test_set(tmp_path, speech):
    """clean/, noisy/ (white noise at the manifest SNR), two systems 5 and 10 dB better, a manifest."""
    for seed, (file_id, (snr, _)) in enumerate(FILES.items()):
        clean = speech(2.0, f0=110.0 + 15 * seed, seed=seed).double().numpy()
        noise = np.random.default_rng(100 + seed).standard_normal(len(clean))
        noise /= np.sqrt(np.mean(noise ** 2) / np.mean(clean ** 2))
        for folder, gain_db in [("noisy", 0), ("better", 5), ("best", 10)]:
            write(tmp_path / folder / f"{file_id}.wav", clean + noise * 10 ** (-(snr + gain_db) / 20))
        write(tmp_path / "clean" / f"{file_id}.wav", clean)
    pd.DataFrame([{"id": i, "snr": s, "noise_type": n} for i, (s, n) in FILES.items()]).to_csv(
        tmp_path / "manifest.csv", index=False)
    return tmp_path


def test_golden_markdown(test_set, capsys, monkeypatch):
    root = test_set
    code = evaluate.main(["--enhanced", f"better={root / 'better'}", f"best={root / 'best'}",
                          f"gone={root / 'gone'}", "--clean", str(root / "clean"), "--noisy", str(root / "noisy"),
                          "--manifest", str(root / "manifest.csv"), "--group-by", "snr,noise_type",
                          "--out", str(root / "cmp")])
    assert code == 1 and "gone" in capsys.readouterr().err  # a failed folder: exit 1, its row marked
    text = (root / "cmp" / "comparison.md").read_text().replace(str(root), "<root>")
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()
    saved = json.loads((root / "cmp" / "comparison.json").read_text())
    assert [s["labels"]["system"] for s in saved["systems"]] == ["better", "best", "gone"]
    assert saved["systems"][2]["summary"] is None and "not found" in saved["systems"][2]["error"]
    long = pd.read_csv(root / "cmp" / "comparison.csv")
    best = long.query("group_by == 'all' and system == 'best' and signal == 'improvement' and metric == 'si_sdr'")
    assert best["mean"].item() == pytest.approx(10, abs=0.05)
    # a rerun reuses every per-file row (nothing is recomputed) and writes the same table
    monkeypatch.setattr(evaluation, "compute_metrics", lambda *a, **k: pytest.fail("recomputed a row"))
    evaluate.main(["--enhanced", f"better={root / 'better'}", f"best={root / 'best'}", f"gone={root / 'gone'}",
                   "--clean", str(root / "clean"), "--noisy", str(root / "noisy"), "--manifest",
                   str(root / "manifest.csv"), "--group-by", "snr,noise_type", "--out", str(root / "cmp")])
    assert (root / "cmp" / "comparison.md").read_text().replace(str(root), "<root>") == text


def per_file(values: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame({"id": [f"f{i}" for i in range(len(next(iter(values.values()))))], **values})


def test_rules_noisy_first_best_bold_paired_improvement_failures_kept():
    noisy = per_file({"si_sdr": [0.0, 10.0, 20.0]})
    systems = [System({"run": "a", "w": "1"}, per_file({"si_sdr": [5.0, 15.0, float("nan")]})),
               System({"run": "a", "w": "3"}, per_file({"si_sdr": [4.0, 14.0, 24.0]})),
               System({"run": "b", "w": "1"}, error="enhancement failed: out of memory")]
    text = markdown(compare(systems, ["si_sdr"], noisy), "t")
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert rows[0].startswith("| noisy | – | 3 | 10.0 ± 8.2 |  |")
    # a: mean of its 2 files is 10.0; improvement is paired (5 + 5) / 2, not 10.0 - 10.0
    assert rows[1] == "| a | 1 | 3 | 10.0 ± 5.0 (n=2) | +5.0 |"
    assert rows[2] == "| a | 3 | 3 | **14.0 ± 8.2** | +4.0 |"
    assert rows[3] == "| b | 1 | FAILED | – |  |"
    assert "FAILED run=b, w=1: enhancement failed: out of memory" in text


def test_cli_names(tmp_path):
    assert evaluate.named_folders(["a=x/y", "x/z"]) == {"a": Path("x/y"), "z": Path("x/z")}
    assert evaluate.main(["--enhanced", "a=x", "a=y", "--clean", str(tmp_path)]) == 2
    assert evaluate.main(["--enhanced", "a=x", "b=y", "--clean", str(tmp_path)]) == 2  # no --out


def test_baseline_gives_paired_differences_clustered_by_the_noise_column(test_set):
    root = test_set
    code = evaluate.main(["--enhanced", f"better={root / 'better'}", f"best={root / 'best'}", "--baseline", "better",
                          "--clean", str(root / "clean"), "--noisy", str(root / "noisy"),
                          "--manifest", str(root / "manifest.csv"), "--out", str(root / "cmp"), "--no-estoi"])
    assert code == 0
    rows = pd.read_csv(root / "cmp" / "paired.csv")
    si = rows.query("metric == 'si_sdr'").iloc[0]
    best = pd.read_csv(root / "cmp" / "best" / "per_file.csv").set_index("id")["si_sdr"]
    better = pd.read_csv(root / "cmp" / "better" / "per_file.csv").set_index("id")["si_sdr"]
    assert (si["a"], si["b"], si["n_files"]) == ("best", "better", 4)
    assert si["mean"] == pytest.approx((best - better).mean())
    assert si["cluster_by"] == "noise_type" and si["clustered_units"] == 2  # hum, hiss
    assert si["files_low"] < si["mean"] < si["files_high"]
    text = (root / "cmp" / "paired.md").read_text()
    assert "| best | better (baseline better) | SI-SDR [dB] (16 kHz) | 4 | 1 |" in text and "cluster-robust" in text
    assert evaluate.main(["--enhanced", f"a={root / 'better'}", f"b={root / 'best'}", "--baseline", "c",
                          "--clean", str(root / "clean"), "--out", str(root / "cmp2")]) == 2
