"""DNSMOS (optional extra `.[dnsmos]`): runs offline on one file when installed, a clear message when not."""
import builtins
import json

import numpy as np
import pytest
import soundfile as sf

from sgmse_nc.eval import evaluate
from sgmse_nc.eval import dnsmos
from sgmse_nc.eval.metrics import DNSMOS_METRICS

SR = 16000


def test_missing_extra_is_one_clear_message(tmp_path, monkeypatch, capsys):
    real_import = builtins.__import__

    def no_speechmos(name, *args, **kwargs):
        if name.startswith("speechmos"):
            raise ImportError("No module named 'speechmos'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_speechmos)
    (tmp_path / "enh").mkdir()
    sf.write(tmp_path / "enh" / "a.wav", np.zeros(SR, dtype=np.float32), SR)
    assert not dnsmos.available()
    assert evaluate.main(["--enhanced", str(tmp_path / "enh"), "--dnsmos"]) == 2
    err = capsys.readouterr().err
    assert 'pip install -e ".[dnsmos]"' in err and "Traceback" not in err
    assert evaluate.main(["--enhanced", str(tmp_path / "enh")]) == 2  # no clean, no --dnsmos: nothing to do
    assert "--clean is needed" in capsys.readouterr().err


def test_dnsmos_on_one_file_without_a_clean_folder(tmp_path, speech):
    if not dnsmos.available():
        pytest.skip('DNSMOS extra not installed: pip install -e ".[dnsmos]" (speechmos, onnxruntime)')
    clean = speech(3.0, seed=1).numpy()
    noise = 0.05 * np.random.default_rng(0).standard_normal(len(clean))
    for folder, wav in [("noisy", clean + noise), ("enhanced", clean + 0.1 * noise)]:
        (tmp_path / folder).mkdir()
        sf.write(tmp_path / folder / "u1.wav", wav.astype(np.float32), SR, subtype="FLOAT")
    out = tmp_path / "eval"
    assert evaluate.main(["--enhanced", str(tmp_path / "enhanced"), "--noisy", str(tmp_path / "noisy"),
                          "--dnsmos", "--out", str(out)]) == 0
    saved = json.loads((out / "dnsmos.json").read_text())
    enhanced, noisy = saved["systems"][0]["summary"], saved["noisy"]
    for m in DNSMOS_METRICS:
        assert 1.0 <= enhanced["enhanced"][m]["mean"] <= 5.0 and enhanced["enhanced"][m]["n"] == 1
    assert enhanced["enhanced"]["dnsmos_bak"]["mean"] > noisy["enhanced"]["dnsmos_bak"]["mean"]  # less noise
    text = (out / "dnsmos.md").read_text()
    assert "DNSMOS OVRL" in text and text.index("| noisy |") < text.index("| enhanced |")


def test_dnsmos_rows_are_reused_while_their_file_is_unchanged(tmp_path, monkeypatch):
    """The per-file cache (sgmse_nc.eval.rows): a rerun scores only new or touched files; the model is faked."""
    monkeypatch.setattr(dnsmos, "dnsmos_model", lambda: None)
    scored = []

    def fake_scores(wav, sample_rate=SR):
        scored.append(len(wav))
        return {m: float(len(wav)) / SR for m in DNSMOS_METRICS}

    monkeypatch.setattr(dnsmos, "dnsmos_scores", fake_scores)
    folder = tmp_path / "enh"
    folder.mkdir()
    for name, seconds in [("a", 1.0), ("b", 2.0)]:
        sf.write(folder / f"{name}.wav", np.zeros(int(seconds * SR), dtype=np.float32), SR)
    cache = tmp_path / "dnsmos.csv"
    first = dnsmos.dnsmos_folder(folder, cache, quiet=True)
    assert scored == [SR, 2 * SR] and list(first["id"]) == ["a", "b"]
    assert dnsmos.dnsmos_folder(folder, cache, quiet=True).equals(first) and len(scored) == 2  # all reused
    sf.write(folder / "b.wav", np.zeros(3 * SR, dtype=np.float32), SR)  # replaced: scored again
    again = dnsmos.dnsmos_folder(folder, cache, quiet=True)
    assert scored[2:] == [3 * SR] and list(again["dnsmos_ovrl"]) == [1.0, 3.0]
