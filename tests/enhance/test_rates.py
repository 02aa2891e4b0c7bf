"""Enhancement at the model's rate: input at another rate is refused in one line without --resample, and with
it resampled to the model's rate and returned at the input's rate and length (16 kHz and 48 kHz models)."""
import pytest
import pytorch_lightning as pl
import soundfile as sf
import torch

from tests.helpers import enhance_command as enhance, error_line_of as error_line, write_noise_wav

FAST = ("--N", "2")


@pytest.fixture(scope="module")
def ckpt_48k(tmp_path_factory):
    """A tiny unconditional 48 kHz model (random weights) in train.py's checkpoint format."""
    from sgmse_nc.config import build_model_from_config

    torch.manual_seed(0)
    model = build_model_from_config(["backbone=ncsnpp_tiny", "encoder=none", "spec=48k"])
    path = tmp_path_factory.mktemp("ckpt") / "tiny48k.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams), "global_step": 1,
                "pytorch-lightning_version": pl.__version__, "ema": model.ema.state_dict()}, path)
    return path


def test_48k_file_to_a_16k_model(tmp_path, tiny_ckpt):
    noisy = write_noise_wav(tmp_path / "in" / "full.wav", 0.7, rate=48000)
    refused = enhance("--ckpt", tiny_ckpt, "--noisy", noisy, "--out", tmp_path / "o1", *FAST, check=2)
    line = error_line(refused)
    assert "full.wav" in line and "48000 Hz" in line and "--resample" in line and "16 kHz" in line
    assert not (tmp_path / "o1").exists()
    enhance("--ckpt", tiny_ckpt, "--noisy", noisy, "--out", tmp_path / "o1", "--resample", *FAST, check=0)
    out = sf.info(tmp_path / "o1" / "full.wav")
    assert (out.samplerate, out.frames) == (48000, int(0.7 * 48000))


def test_a_48k_model_works_at_48k(tmp_path, ckpt_48k):
    full = write_noise_wav(tmp_path / "in48" / "full.wav", 0.7, rate=48000)
    enhance("--ckpt", ckpt_48k, "--noisy", full, "--out", tmp_path / "o48", *FAST, check=0)
    out = sf.info(tmp_path / "o48" / "full.wav")
    assert (out.samplerate, out.frames) == (48000, int(0.7 * 48000))

    wide = write_noise_wav(tmp_path / "in16" / "wide.wav", 0.7, rate=16000)
    line = error_line(enhance("--ckpt", ckpt_48k, "--noisy", wide, "--out", tmp_path / "o16", *FAST, check=2))
    assert "16000 Hz" in line and "48 kHz" in line and "--resample" in line
    enhance("--ckpt", ckpt_48k, "--noisy", wide, "--out", tmp_path / "o16", "--resample", *FAST, check=0)
    out = sf.info(tmp_path / "o16" / "wide.wav")
    assert (out.samplerate, out.frames) == (16000, int(0.7 * 16000))


def test_library_enhance_takes_the_model_rate_only():
    from sgmse_nc.config import build_model_from_config
    from sgmse_nc.enhance.core import enhance as enhance_waves
    from sgmse_nc.errors import UserError

    model = build_model_from_config(["backbone=ncsnpp_tiny", "encoder=none", "spec=48k"]).eval()
    (out,) = enhance_waves(model, [0.1 * torch.randn(12000)], N=1)
    assert out.shape == (12000,)
    with pytest.raises(UserError, match="48000 Hz"):
        enhance_waves(model, [0.1 * torch.randn(12000)], sample_rate=16000, N=1)
