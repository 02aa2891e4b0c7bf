"""One reference length: a checkpoint records the length its references were trained at (data.train.ref_seconds),
and enhancement (sgmse-enhance, the Enhancer API) encodes the centre stretch of that length of each reference
file (looped when shorter) unless the user gives another; a checkpoint that does not record it encodes whole
files; the settings record says which."""
import json
import logging

import numpy as np
import pytest
import soundfile as sf
import torch

from sgmse_nc import Enhancer
from sgmse_nc.config import build_model_from_config
from sgmse_nc.diffusion.model import ScoreModel
from tests.helpers import enhance_command

SR = 16000


@pytest.fixture
def encoded(monkeypatch):
    """The reference waveforms the model encodes, in its calls' order (times the noisy peak they were divided by
    is checked through the ramp's own values)."""
    seen, encode = [], ScoreModel.encode

    def spy(self, r, r_wav):
        seen.append(r_wav.detach().cpu()[0].clone())
        return encode(self, r, r_wav)
    monkeypatch.setattr(ScoreModel, "encode", spy)
    return seen


def ramp(samples: int) -> np.ndarray:
    """A reference whose every sample tells where it is (so a stretch shows its start)."""
    return (0.001 * (1 + np.arange(samples) % 997) * (1 + np.arange(samples) // 997)).astype(np.float32) / 20


def write(folder, name, wav):
    folder.mkdir(parents=True, exist_ok=True)
    sf.write(folder / name, wav, SR, subtype="FLOAT")


def stretch_of(seen: torch.Tensor, reference: np.ndarray) -> tuple[int, int]:
    """(start, length) of the stretch of `reference` that `seen` is (up to the peak normalisation)."""
    ratio = reference[1:] / reference[:-1]
    seen = seen.numpy()
    for start in range(len(reference) - len(seen) + 1):
        if np.allclose(seen[1:] / seen[:-1], ratio[start:start + len(seen) - 1], rtol=1e-4):
            return start, len(seen)
    return -1, len(seen)


def test_the_checkpoint_records_its_training_reference_length():
    assert build_model_from_config(["backbone=ncsnpp_tiny"]).hparams["ref_seconds"] == 0.25  # data.train's
    assert build_model_from_config(["backbone=ncsnpp_tiny", "data.train.ref_seconds=0.5"]).ref_seconds == 0.5


def test_enhancement_encodes_the_centre_stretch_the_checkpoint_was_trained_with(tmp_path, tiny_ckpt, encoded,
                                                                               caplog):
    caplog.set_level(logging.INFO)
    assert torch.load(tiny_ckpt, weights_only=True)["hyper_parameters"]["ref_seconds"] == 0.25
    noisy = 0.1 * np.sin(np.arange(SR) / 7).astype(np.float32)
    write(tmp_path / "noisy", "a.wav", noisy)
    write(tmp_path / "noisy", "b.wav", noisy)
    write(tmp_path / "refs", "a.wav", ramp(SR))          # 1 s: the centre 0.25 s is taken
    write(tmp_path / "refs", "b.wav", ramp(1600))        # 0.1 s: looped to 0.25 s, as training loops
    base = ["--ckpt", tiny_ckpt, "--noisy", tmp_path / "noisy", "--ref-dir", tmp_path / "refs", "--N", "1"]
    out = enhance_command(*base, "--out", tmp_path / "out", check=0)
    assert [len(r) for r in encoded] == [4000, 4000]
    assert stretch_of(encoded[0], ramp(SR)) == ((SR - 4000) // 2, 4000)
    assert torch.allclose(encoded[1][1600:3200], encoded[1][:1600])  # looped
    settings = json.loads((tmp_path / "out" / "enhance_settings.json").read_text())
    assert settings["ref_seconds"] == 0.25 and settings["ref_crop"] == "centre"
    assert "references: the centre 0.25 s of each reference file (the checkpoint's ref_seconds" in caplog.text

    encoded.clear()  # the user's length wins
    enhance_command(*base, "--ref-seconds", "0.5", "--out", tmp_path / "out_05", check=0)
    assert stretch_of(encoded[0], ramp(SR)) == ((SR - 8000) // 2, 8000)

    encoded.clear()  # a checkpoint from before the length was kept: whole files, and the record says so
    old = torch.load(tiny_ckpt, weights_only=True)
    del old["hyper_parameters"]["ref_seconds"]
    torch.save(old, tmp_path / "old.ckpt")
    enhance_command("--ckpt", tmp_path / "old.ckpt", *base[2:], "--out", tmp_path / "out_old", check=0)
    assert [len(r) for r in encoded] == [SR, 1600]
    assert "ref_seconds" not in json.loads((tmp_path / "out_old" / "enhance_settings.json").read_text())
    assert "references: each whole reference file (the checkpoint records no ref_seconds)" in caplog.text


def test_the_api_encodes_the_same_stretch(tiny_ckpt, encoded):
    enhancer = Enhancer.from_checkpoint(tiny_ckpt, device="cpu")
    noisy = 0.1 * np.sin(np.arange(SR) / 7).astype(np.float32)
    enhancer.enhance(noisy, SR, reference=ramp(SR), N=1)
    enhancer.enhance(noisy, SR, reference=ramp(SR), N=1, ref_seconds=0.5)
    assert stretch_of(encoded[0], ramp(SR)) == ((SR - 4000) // 2, 4000)
    assert stretch_of(encoded[1], ramp(SR)) == ((SR - 8000) // 2, 8000)
