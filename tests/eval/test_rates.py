"""Evaluation at the files' rate: PESQ at 16 kHz wide band (resampled), ESTOI as pystoi defines it (its own
10 kHz), SI-SDR at the files' rate, and the table header says which rate each metric used."""
import json

import numpy as np
import pesq
import pytest
import soundfile as sf
import torch
from pystoi import stoi

from sgmse_nc.audio import resample_audio
from sgmse_nc.eval.folder import evaluate_folders
from sgmse_nc.eval.metrics import si_sdr

RATE = 48000


def write_pair(root, speech, seconds=2.0):
    """Clean speech-like audio at 48 kHz and an 'enhanced' copy whose only error lies at 12 kHz: at 48 kHz
    SI-SDR sees it, after resampling to 16 kHz it would be gone."""
    clean = speech(seconds, sr=RATE).numpy().astype(np.float64)
    t = np.arange(clean.size) / RATE
    enhanced = clean + 0.01 * np.sin(2 * np.pi * 12000 * t)
    for folder, wav in (("clean", clean), ("enhanced", enhanced)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        sf.write(root / folder / "u.wav", wav, RATE, subtype="FLOAT")
    return clean, enhanced


def test_metrics_at_the_files_rate(tmp_path, speech):
    clean, enhanced = write_pair(tmp_path, speech)
    summary = evaluate_folders(tmp_path / "enhanced", tmp_path / "clean", out_dir=tmp_path / "eval", plot=False,
                               quiet=True)
    assert summary["settings"]["sample_rate"] == RATE
    got = {m: summary["enhanced"][m]["mean"] for m in ("pesq", "estoi", "si_sdr")}
    assert got["si_sdr"] == pytest.approx(float(si_sdr(enhanced, clean)), abs=1e-6)
    at_16k = float(si_sdr(*(resample_audio(torch.from_numpy(w), RATE, 16000).numpy() for w in (enhanced, clean))))
    assert got["si_sdr"] < at_16k - 10  # the 12 kHz error counts (it would vanish at 16 kHz)
    down = [resample_audio(torch.from_numpy(w), RATE, 16000).numpy() for w in (clean, enhanced)]
    assert got["pesq"] == pytest.approx(pesq.pesq(16000, down[0], down[1], "wb"), abs=1e-3)  # files hold float32
    assert got["estoi"] == pytest.approx(stoi(clean, enhanced, RATE, extended=True), abs=1e-4)
    header = (tmp_path / "eval" / "summary.md").read_text().splitlines()[2]
    assert "PESQ @16k" in header and "ESTOI @10k" in header and "SI-SDR [dB] @48k" in header
    stored = json.loads((tmp_path / "eval" / "summary.json").read_text())["settings"]["metric_rates"]
    assert stored == {"pesq": 16000, "estoi": 10000, "si_sdr": RATE}


def test_clean_files_at_several_rates_need_a_rate(tmp_path, speech):
    write_pair(tmp_path, speech)
    sf.write(tmp_path / "clean" / "v.wav", speech(1.0).numpy(), 16000)
    sf.write(tmp_path / "enhanced" / "v.wav", speech(1.0).numpy(), 16000)
    from sgmse_nc.eval.folder import EvaluationError
    with pytest.raises(EvaluationError, match="several rates.*--sample-rate"):
        evaluate_folders(tmp_path / "enhanced", tmp_path / "clean", out_dir=tmp_path / "eval", plot=False, quiet=True)
    summary = evaluate_folders(tmp_path / "enhanced", tmp_path / "clean", out_dir=tmp_path / "eval16", plot=False,
                               quiet=True, sample_rate=16000)
    assert summary["settings"]["metric_rates"]["si_sdr"] == 16000 and summary["n_files"] == 2
