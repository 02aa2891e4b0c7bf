"""Noise augmentation: each source/transform changes the noise (and its reference) as it should."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import signal

from sgmse_nc.audio import write_audio
from sgmse_nc.data.augment import (BabbleSource, ConcatSource, MixSource, NoiseAugment, StretchSource,
                                   SyntheticSource, crossfade_concat)
from sgmse_nc.data.mixing import MixingDataset
from sgmse_nc.data.noise_pool import AudioPool
from sgmse_nc.data.noise_source import NoisePair, PoolSource
from sgmse_nc.data.synthetic import speech_like

SR = 16000


class Sine:
    """A source of pure tones: noise and reference at `freq`, at amplitude `amp` (easy to locate in a mix)."""

    def __init__(self, freq: float, amp: float = 1.0):
        self.freq, self.amp = freq, amp

    def tone(self, n: int, rng) -> torch.Tensor:
        t = torch.arange(n, dtype=torch.float64) / SR
        return (self.amp * torch.sin(2 * np.pi * self.freq * t + float(rng.uniform(0, 6.28)))).float()

    def draw(self, length, ref_length, rng):
        return NoisePair(self.tone(length, rng), self.tone(ref_length, rng), f"sine{self.freq:g}")


def dominant_hz(wav: torch.Tensor) -> float:
    spectrum = np.abs(np.fft.rfft(wav.numpy() * np.hanning(wav.numel())))
    return float(np.fft.rfftfreq(wav.numel(), 1 / SR)[spectrum.argmax()])


def amplitude_at(wav: torch.Tensor, freq: float) -> float:
    """Amplitude of the `freq` component (least squares on sin/cos)."""
    t = np.arange(wav.numel()) / SR
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)], 1)
    coef = np.linalg.lstsq(basis, wav.numpy().astype(np.float64), rcond=None)[0]
    return float(np.hypot(*coef))


def spectral_slope(wav: torch.Tensor) -> float:
    """Slope of log10 power vs log10 frequency between 100 Hz and 4 kHz (pink ≈ −1, brown ≈ −2)."""
    freqs, power = signal.welch(wav.numpy(), SR, nperseg=4096)
    band = (freqs >= 100) & (freqs <= 4000)
    return float(np.polyfit(np.log10(freqs[band]), np.log10(power[band]), 1)[0])


@pytest.mark.parametrize("kind,slope", [("white", 0.0), ("pink", -1.0), ("brown", -2.0)])
def test_synthetic_noise_has_its_spectral_slope(kind, slope):
    pair = SyntheticSource(kind).draw(4 * SR, SR // 4, np.random.default_rng(0))
    assert pair.noise.shape == (4 * SR,) and pair.reference.shape == (SR // 4,)
    assert spectral_slope(pair.noise) == pytest.approx(slope, abs=0.15)
    # the reference is an independent draw of the same noise, not a piece of it
    assert not any(torch.equal(pair.reference, pair.noise[i:i + SR // 4]) for i in range(0, 4 * SR, SR // 4))


def test_unknown_synthetic_kind_is_refused():
    with pytest.raises(ValueError, match="unknown synthetic noise type"):
        SyntheticSource("purple")


@pytest.fixture
def tone_pool(tmp_path):
    """A 'speech' pool of five 1-s tones; talker k sings (300 + 200 k) Hz."""
    for k in range(5):
        t = np.arange(SR) / SR
        write_audio(tmp_path / f"talker{k}.wav", 0.1 * np.sin(2 * np.pi * (300 + 200 * k) * t), SR, "FLOAT")
    return AudioPool(tmp_path)


def test_babble_sums_other_utterances_of_the_pool(tone_pool):
    source = BabbleSource(tone_pool, talkers=(3, 3), exclude=0)
    for seed in range(5):
        pair = source.draw(8000, 4000, np.random.default_rng(seed))
        present = [amplitude_at(pair.noise, 300 + 200 * k) > 0.1 for k in range(5)]
        assert not present[0], "the clean utterance itself never talks in its babble"
        assert sum(present) == 3  # 3 distinct talkers (repeats only when the pool is too small)
        assert sum(amplitude_at(pair.reference, 300 + 200 * k) > 0.1 for k in range(5)) == 3
        assert pair.category == "babble" and len(pair.noise_file.split(";")) == 3


def test_two_noise_mix_uses_alpha_and_one_minus_alpha():
    a, b = Sine(440.0, amp=3.0), Sine(1000.0, amp=0.2)
    alphas = []
    for seed in range(8):
        pair = MixSource(a, b).draw(SR, SR // 2, np.random.default_rng(seed))
        alpha = pair.info["alpha"]
        alphas.append(alpha)
        unit = np.sqrt(2)  # a unit-RMS sine has amplitude √2
        assert amplitude_at(pair.noise, 440) == pytest.approx(alpha * unit, rel=1e-3)
        assert amplitude_at(pair.noise, 1000) == pytest.approx((1 - alpha) * unit, rel=1e-3)
        # the reference is mixed with the same weights (gains of the mixed noises)
        assert amplitude_at(pair.reference, 440) / amplitude_at(pair.reference, 1000) == pytest.approx(
            alpha / (1 - alpha), rel=1e-2)
    assert all(0.3 <= x <= 0.7 for x in alphas) and max(alphas) - min(alphas) > 0.05


@pytest.mark.parametrize("factor", [0.8, 1.25])
def test_time_stretch_changes_speed_but_keeps_lengths(factor):
    pair = StretchSource(Sine(1000.0), (factor, factor)).draw(12000, 4000, np.random.default_rng(0))
    assert pair.noise.shape == (12000,) and pair.reference.shape == (4000,)
    assert pair.info["factor"] == factor
    assert dominant_hz(pair.noise) == pytest.approx(1000 * factor, abs=5)
    assert dominant_hz(pair.reference) == pytest.approx(1000 * factor, abs=10)


def test_concatenated_segments_in_order_with_exact_length():
    pair = ConcatSource([Sine(500.0), Sine(1500.0)], crossfade=400).draw(16000, 4000, np.random.default_rng(1))
    assert pair.noise.shape == (16000,) and pair.reference.shape == (4000,)
    first, second = pair.info["segment_lengths"]
    assert min(first, second) >= 16000 // 4  # no segment shorter than half an equal share
    assert dominant_hz(pair.noise[:first - 400]) == pytest.approx(500, abs=10)
    assert dominant_hz(pair.noise[first:]) == pytest.approx(1500, abs=10)
    assert pair.category == "sine500>sine1500"


def test_crossfade_keeps_power_of_uncorrelated_noise():
    rng = np.random.default_rng(0)
    a, b = (torch.from_numpy(rng.standard_normal(20000)).float() for _ in range(2))
    out = crossfade_concat([a, b], 8000)
    assert out.shape == (32000,)
    middle = out[10000 + 2000:10000 + 6000]  # inside the crossfade
    assert middle.pow(2).mean().item() == pytest.approx(1.0, abs=0.1)


def test_noise_augment_probabilities_select_sources(tone_pool):
    pools = PoolSource(tone_pool)
    rng = np.random.default_rng(0)
    assert isinstance(NoiseAugment(p_pink=1.0).source(pools, rng), SyntheticSource)
    assert NoiseAugment().source(pools, rng) is pools
    assert isinstance(NoiseAugment(p_mix=1.0).source(pools, rng), MixSource)
    assert isinstance(NoiseAugment(p_stretch=1.0).source(pools, rng), StretchSource)
    assert isinstance(NoiseAugment(p_concat=1.0).source(pools, rng), ConcatSource)
    assert isinstance(NoiseAugment(p_babble=1.0).source(pools, rng, tone_pool, exclude=0), BabbleSource)
    with pytest.raises(ValueError, match="needs a speech pool"):
        NoiseAugment(p_babble=1.0).source(pools, rng)
    with pytest.raises(ValueError, match="must not exceed 1"):
        NoiseAugment(p_white=0.6, p_pink=0.6)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        NoiseAugment(p_mix=1.5)
    with pytest.raises(ValueError, match="mix_alpha"):
        NoiseAugment(mix_alpha=(0.8, 0.2))


def test_mixing_dataset_with_every_augmentation(tmp_path):
    rng = np.random.default_rng(0)
    for k in range(4):
        write_audio(tmp_path / "speech" / f"u{k}.wav", speech_like(3 * SR, rng), SR)
    write_audio(tmp_path / "noise" / "cafe" / "rec.wav", 0.1 * rng.standard_normal(5 * SR), SR)
    augment = dict(p_white=0.2, p_pink=0.2, p_brown=0.2, p_babble=0.3, p_mix=0.5, p_concat=0.5, p_stretch=0.5,
                   stretch_range=[0.9, 1.1])
    data = MixingDataset(tmp_path / "speech", [str(tmp_path / "noise")], snr_range=(0, 10), augment=augment,
                         length=12, num_frames=64)
    for i in range(len(data)):
        example = data[i]
        assert example["x"].shape == example["y"].shape == (1, 256, 64)
        assert example["r_wav"].shape == (4000,) and torch.isfinite(example["r_wav"]).all()
        assert torch.isfinite(example["y"]).all() and example["y"].abs().amax() > 0
