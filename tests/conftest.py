import numpy as np
import pytest
import torch

torch.set_num_threads(1)


def speech_like(seconds: float = 1.0, sr: int = 16000, f0: float = 140.0, seed: int = 0) -> torch.Tensor:
    """A few harmonics with a slow amplitude envelope: enough structure for transforms and metrics."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    pitch = f0 * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / sr
    wav = sum(np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 8))
    env = 0.5 * (1 + np.sin(2 * np.pi * 3 * t)) ** 2
    return torch.tensor(0.1 * wav * env, dtype=torch.float32)


@pytest.fixture
def speech():
    return speech_like


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory):
    """A checkpoint of a tiny conditional model (random weights), in train.py's format; built once per session."""
    import pytorch_lightning as pl

    from sgmse_nc.config import build_model_from_config

    torch.manual_seed(0)
    model = build_model_from_config(["backbone=ncsnpp_tiny", "encoder=cnn"])
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams), "global_step": 7,
                "pytorch-lightning_version": pl.__version__, "ema": model.ema.state_dict()}, path)
    return path
