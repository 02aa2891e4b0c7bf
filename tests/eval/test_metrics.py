import math

import numpy as np
import pytest
import torch

from sgmse_nc.audio import AudioError
from sgmse_nc.eval.metrics import compute_metrics, si_sdr

SR = 16000


def speech_like(seconds=2.5, seed=0):
    """Harmonic tones with a syllable-rate envelope and pauses: enough 'speech' for PESQ's voice detection."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 120 + 40 * rng.random()
    tones = sum(np.sin(2 * np.pi * k * f0 * t + rng.random() * 6) / k for k in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * 3 * t), 0, None) ** 0.5
    return (0.1 * tones * envelope).astype(np.float32)


def white_noise_at_snr(speech, snr_db, seed=1):
    noise = np.random.default_rng(seed).standard_normal(len(speech))
    return noise * np.sqrt(np.mean(speech.astype(np.float64) ** 2) / np.mean(noise ** 2) / 10 ** (snr_db / 10))


def test_identical_signals_score_the_maximum():
    s = speech_like()
    scores = compute_metrics(s, s, SR)
    assert scores["si_sdr"] > 60
    assert scores["estoi"] == pytest.approx(1.0, abs=1e-6)
    assert scores["pesq"] > 4.5  # P.862.2 maximum is 4.64
    assert scores["errors"] == ""


def test_narrow_band_pesq_resamples_to_8k():
    s = speech_like()
    assert compute_metrics(s, s, SR, metrics=("pesq_nb",))["pesq_nb"] > 4.4


def test_si_sdr_is_scale_invariant():
    s = speech_like()
    noisy = s + white_noise_at_snr(s, 10)
    base = si_sdr(noisy, s)
    for gain in (0.01, 0.5, 7.0):
        assert si_sdr(gain * noisy, s) == pytest.approx(base, abs=1e-4)
    assert si_sdr(0.3 * s, s) > 60
    assert si_sdr(s + 0.05, s) > 60 and si_sdr(s, s - 0.05) > 60  # zero-mean: a DC offset is no error


@pytest.mark.parametrize("snr", [0.0, 5.0, 10.0])
def test_si_sdr_of_a_known_snr_mixture(snr):
    s = speech_like(3.0)
    assert si_sdr(s + white_noise_at_snr(s, snr), s) == pytest.approx(snr, abs=0.5)


def test_si_sdr_is_vectorised_over_numpy_and_torch():
    clean = np.stack([speech_like(1.0, seed) for seed in range(3)])
    noisy = clean + np.stack([white_noise_at_snr(c, snr, seed) for seed, (c, snr) in enumerate(zip(clean, [0, 5, 10]))])
    expected = np.array([si_sdr(n, c) for n, c in zip(noisy, clean)])
    batched = si_sdr(noisy, clean)
    assert batched.shape == (3,)
    np.testing.assert_allclose(batched, expected, rtol=1e-9)
    as_torch = si_sdr(torch.from_numpy(noisy), torch.from_numpy(clean))
    assert isinstance(as_torch, torch.Tensor)
    np.testing.assert_allclose(as_torch.numpy(), expected, rtol=1e-9)
    assert np.argsort(batched).tolist() == [0, 1, 2]


def test_compute_metrics_accepts_torch_tensors():
    s = speech_like()
    scores = compute_metrics(torch.from_numpy(s), torch.from_numpy(s), SR, metrics=("si_sdr",))
    assert scores["si_sdr"] > 60


def test_silence_gives_nan_and_a_reason_not_a_crash():
    s = speech_like()
    silent = np.zeros_like(s)
    both = compute_metrics(silent, silent, SR)
    assert all(math.isnan(both[m]) for m in ("pesq", "estoi", "si_sdr"))
    assert "reference is silent" in both["errors"]
    muted = compute_metrics(silent, s, SR)
    assert math.isnan(muted["pesq"]) and math.isnan(muted["si_sdr"])
    assert "estimate is silent" in muted["errors"]
    assert muted["estoi"] < 0.1  # a silent output is a (bad) estimate ESTOI can still score


def test_too_short_input_gives_nan_and_a_reason():
    s = speech_like(0.1)
    scores = compute_metrics(s, s, SR)
    assert math.isnan(scores["pesq"]) and math.isnan(scores["estoi"])
    assert "too short for PESQ" in scores["errors"] and "too short for ESTOI" in scores["errors"]
    assert scores["si_sdr"] > 60  # SI-SDR needs no minimum length


def test_small_length_differences_are_trimmed_large_ones_are_an_error():
    s = speech_like()
    assert compute_metrics(s[:-10], s, SR, metrics=("si_sdr",))["si_sdr"] > 60
    with pytest.raises(AudioError, match=r"enh\.wav and clean\.wav have .* samples"):
        compute_metrics(s[: len(s) // 2], s, SR, metrics=("si_sdr",), names=("enh.wav", "clean.wav"))


def test_unknown_metric_is_refused():
    s = speech_like(0.5)
    with pytest.raises(ValueError, match="unknown metric"):
        compute_metrics(s, s, SR, metrics=("mos",))
