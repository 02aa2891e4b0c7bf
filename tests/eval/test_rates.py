"""Evaluation at the files' rate: PESQ at 16 kHz wide band (resampled), ESTOI as pystoi defines it (its own
10 kHz), SI-SDR at the files' rate, DNSMOS P.835 at 16 kHz; every table header (summary, comparison, paired,
DNSMOS) names the rate each metric was computed at, from the metric registry, and each value is what the metric
gives at the rate its header names (so a metric computed at another rate than its header says turns this red)."""
import json
import re
import sys

import numpy as np
import pesq
import pytest
import soundfile as sf
import torch
from pystoi import stoi

from sgmse_nc.audio import resample_audio
from sgmse_nc.eval import dnsmos, metrics as metrics_module
from sgmse_nc.eval.evaluate import compare_folders, evaluate_dnsmos
from sgmse_nc.eval.folder import EvaluationError, evaluate_folders
from sgmse_nc.eval.metrics import DNSMOS_METRICS, METRICS, compute_metrics, si_sdr

RATES = [48000, 24000]
PYSTOI_RATE = sys.modules["pystoi.stoi"].FS  # the module (the package exports its function as `stoi`)


def write_pair(root, speech, rate, seconds=2.0):
    """Clean speech-like audio at `rate` and an 'enhanced' copy whose only error lies at 0.4 x rate (19.2 kHz at
    48 kHz, 9.6 kHz at 24 kHz): at the files' rate SI-SDR sees it, after resampling to 16 kHz it would be gone."""
    clean = speech(seconds, sr=rate).numpy().astype(np.float64)
    t = np.arange(clean.size) / rate
    enhanced = clean + 0.01 * np.sin(2 * np.pi * 0.4 * rate * t)
    noisy = clean + 0.05 * np.random.default_rng(0).standard_normal(clean.size)
    for folder, wav in (("clean", clean), ("enhanced", enhanced), ("noisy", noisy)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        sf.write(root / folder / "u.wav", wav, rate, subtype="FLOAT")
    return clean, enhanced


def header_rates(markdown: str) -> dict[str, tuple[int, str]]:
    """{metric label: (rate in Hz, what follows the rate)} of every `label (N kHz ...)` header cell."""
    cells = re.findall(r"\| ([^|(]+?) \((\d+(?:\.\d+)?) kHz([^)]*)\)", markdown)
    return {label: (round(float(khz) * 1000), note) for label, khz, note in cells}


def at_rate(wavs, rate_from: int, rate_to: int):
    return [resample_audio(torch.from_numpy(w), rate_from, rate_to).numpy() for w in wavs]


@pytest.mark.parametrize("rate", RATES)
def test_each_value_is_its_metric_at_the_rate_its_header_names(tmp_path, speech, rate):
    clean, enhanced = write_pair(tmp_path, speech, rate)
    summary = evaluate_folders(tmp_path / "enhanced", tmp_path / "clean", out_dir=tmp_path / "eval", plot=False,
                               quiet=True)
    header = (tmp_path / "eval" / "summary.md").read_text().splitlines()[2]
    assert header_rates(header) == {"PESQ": (16000, " WB"), "ESTOI": (10000, ", pystoi"),
                                    "SI-SDR [dB]": (rate, "")}
    named = header_rates(header)
    got = {m: summary["enhanced"][m]["mean"] for m in ("pesq", "estoi", "si_sdr")}
    # each value recomputed here at the rate its header names, with the metric's own library
    pesq_rate = named["PESQ"][0]
    assert got["pesq"] == pytest.approx(pesq.pesq(pesq_rate, *at_rate((clean, enhanced), rate, pesq_rate), "wb"),
                                        abs=1e-3)  # the files hold float32
    assert named["ESTOI"][0] == PYSTOI_RATE  # pystoi resamples to its own rate, whatever it is given
    assert got["estoi"] == pytest.approx(stoi(clean, enhanced, rate, extended=True), abs=1e-4)
    assert got["si_sdr"] == pytest.approx(float(si_sdr(*at_rate((enhanced, clean), rate, named["SI-SDR [dB]"][0]))),
                                          abs=1e-6)
    assert got["si_sdr"] < float(si_sdr(*at_rate((enhanced, clean), rate, 16000))) - 10  # the high error counts
    stored = json.loads((tmp_path / "eval" / "summary.json").read_text())["settings"]
    assert stored["sample_rate"] == rate and stored["metric_rates"] == {"pesq": 16000, "estoi": 10000, "si_sdr": rate}


def test_narrow_band_pesq_runs_at_the_rate_its_header_names(monkeypatch, speech):
    seen = []
    real = pesq.pesq
    monkeypatch.setattr(metrics_module.pesq_lib, "pesq", lambda fs, *a: seen.append(fs) or real(fs, *a))
    clean = speech(1.0, sr=48000).numpy().astype(np.float64)
    compute_metrics(clean + 0.01, clean, 48000, metrics=("pesq", "pesq_nb"))
    assert seen == [16000, 8000]
    assert [metrics_module.metric_header(m, 48000) for m in ("pesq", "pesq_nb")] == ["PESQ (16 kHz WB)",
                                                                                      "PESQ-NB (8 kHz NB)"]


@pytest.mark.parametrize("rate", RATES)
def test_comparison_and_paired_headers_name_the_rates(tmp_path, speech, rate):
    write_pair(tmp_path, speech, rate)
    (tmp_path / "other").mkdir()
    sf.write(tmp_path / "other" / "u.wav", sf.read(tmp_path / "noisy" / "u.wav")[0], rate)
    result = compare_folders({"enh": tmp_path / "enhanced", "other": tmp_path / "other"}, tmp_path / "clean",
                             noisy_dir=tmp_path / "noisy", out_dir=tmp_path / "cmp", baseline="other", quiet=True)
    assert result["sample_rate"] == rate
    table = (tmp_path / "cmp" / "comparison.md").read_text()
    assert header_rates(table.split("\n\n")[2].splitlines()[0]) == {
        "PESQ": (16000, " WB"), "ESTOI": (10000, ", pystoi"), "SI-SDR [dB]": (rate, "")}
    paired_text = (tmp_path / "cmp" / "paired.md").read_text()
    assert f"| SI-SDR [dB] ({rate // 1000} kHz) |" in paired_text and "| PESQ (16 kHz WB) |" in paired_text


def test_dnsmos_scores_16k_audio_and_says_so(tmp_path, monkeypatch):
    """DNSMOS P.835's models score 16 kHz audio: a 48 kHz file reaches the model at the registry's rate, and the
    table says 16 kHz (the model is faked: it records what it was given)."""
    given = []

    class FakeModel:
        @staticmethod
        def run(wav, sr):
            given.append((sr, len(wav)))
            return {"sig_mos": 3.0, "bak_mos": 3.0, "ovrl_mos": 3.0}

    monkeypatch.setattr(dnsmos, "dnsmos_model", lambda: FakeModel)
    (tmp_path / "enh").mkdir()
    sf.write(tmp_path / "enh" / "a.wav", np.zeros(48000, dtype=np.float32), 48000)
    evaluate_dnsmos(tmp_path / "enh", out_dir=tmp_path / "out", quiet=True)
    assert {METRICS[m].rate for m in DNSMOS_METRICS} == {16000}
    assert given == [(16000, 16000)]
    header = (tmp_path / "out" / "dnsmos.md").read_text().split("\n\n")[2].splitlines()[0]
    assert header_rates(header) == {"DNSMOS SIG": (16000, ""), "DNSMOS BAK": (16000, ""), "DNSMOS OVRL": (16000, "")}


def test_clean_files_at_several_rates_need_a_rate(tmp_path, speech):
    write_pair(tmp_path, speech, 48000)
    sf.write(tmp_path / "clean" / "v.wav", speech(1.0).numpy(), 16000)
    sf.write(tmp_path / "enhanced" / "v.wav", speech(1.0).numpy(), 16000)
    with pytest.raises(EvaluationError, match="several rates.*--sample-rate"):
        evaluate_folders(tmp_path / "enhanced", tmp_path / "clean", out_dir=tmp_path / "eval", plot=False, quiet=True)
    summary = evaluate_folders(tmp_path / "enhanced", tmp_path / "clean", out_dir=tmp_path / "eval16", plot=False,
                               quiet=True, sample_rate=16000)
    assert summary["settings"]["metric_rates"]["si_sdr"] == 16000 and summary["n_files"] == 2
    assert "SI-SDR [dB] (16 kHz)" in (tmp_path / "eval16" / "summary.md").read_text()
