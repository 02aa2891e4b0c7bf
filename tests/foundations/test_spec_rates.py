"""The sample rate is a spectrogram setting: per-rate defaults (SGMSE+'s at 16 and 48 kHz), configs that match
them, old settings without a rate read as 16 kHz, and datasets that follow it (files at another rate refused at
setup with the prepare command that fixes them)."""
import pytest
import soundfile as sf
import torch

from sgmse_nc.config import compose_config
from sgmse_nc.spec import RATE_DEFAULTS, Spectrogram, dataset_rate


@pytest.mark.parametrize("rate", sorted(RATE_DEFAULTS))
def test_spec_configs_are_the_rate_defaults(rate):
    node = dict(compose_config([f"spec={rate // 1000}k"]).spec)
    assert node == {"_target_": "sgmse_nc.spec.Spectrogram", "sample_rate": rate, **RATE_DEFAULTS[rate]}
    spec = Spectrogram.for_rate(rate)
    assert spec.hop_length / rate == pytest.approx(0.008)  # the 8 ms hop of every SGMSE+ model
    assert abs(spec.n_fft / rate - 0.032) < 0.0002  # and its 32 ms window
    assert spec.num_bins % 64 == 0  # the U-Net halves the frequency axis six times


def test_sgmse_published_settings():
    assert Spectrogram.for_rate(16000) == Spectrogram(510, 128, 0.5, 0.15, 16000) == Spectrogram()
    assert Spectrogram.for_rate(48000) == Spectrogram(1534, 384, 0.667, 0.065, 48000)
    assert compose_config([]).spec.sample_rate == 16000
    with pytest.raises(ValueError, match="22050 Hz"):
        Spectrogram.for_rate(22050)


def test_settings_without_a_rate_are_16k():
    old = {"_target_": "sgmse_nc.spec.Spectrogram", "n_fft": 510, "hop_length": 128, "alpha": 0.5, "beta": 0.15}
    assert Spectrogram.from_config(old).sample_rate == 16000


@pytest.mark.parametrize("rate", [48000, 24000])
def test_a_dataset_follows_its_spectrogram_rate(tmp_path, rate):
    from sgmse_nc.data.paired import PairedFolderDataset
    from sgmse_nc.data.scan import scan_paired

    for kind in ("clean", "noisy"):
        (tmp_path / "train" / kind).mkdir(parents=True)
        sf.write(tmp_path / "train" / kind / "a.wav", 0.1 * torch.randn(16000).numpy(), 16000)
    spec = Spectrogram.for_rate(rate)
    dataset = PairedFolderDataset(tmp_path, "train", spec=spec, reference="none")
    assert dataset.sample_rate == rate
    problems, _ = scan_paired(dataset)
    text = " ".join(map(str, problems))
    assert f"16000 Hz, {rate} Hz is needed" in text and "prepare vbdmd" in text and f"--sample-rate {rate}`" in text
    with pytest.raises(ValueError, match="spec.sample_rate"):
        dataset_rate(spec, 16000)
