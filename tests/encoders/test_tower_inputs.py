"""The towers see what they were trained on: our 16 kHz -> tower-rate path (Kaiser resampler, fill, crop) against
the published pipelines computed here with their own tools: laion-clap's file pipeline (librosa.load at
48 kHz, i.e. soxr, then int16 quantisation, repeat-pad, and laion-clap's CLAP.get_audio_embedding) and the
PANNs release (librosa.load at 32 kHz, then CNN14 on the whole clip). Random weights in the published layouts;
a CLAP checkpoint with a PANN tower is recognised from its mel filters, or refused with the settings."""
import librosa
import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

from sgmse_nc.encoders import build_encoder
from sgmse_nc.encoders.laion import (WeightsError, audio_config, build_tower, check_front_end, clap_projection,
                                     clap_submodule, mel_filters)

SR = 16000


def clips(seconds_list, seed: int = 0) -> dict[str, np.ndarray]:
    """Synthetic and real-like 16 kHz clips: white noise, a harmonic 'voice' with syllable-rate envelope over
    brown-ish noise with silent gaps (empty mel cells), a chirp, and a low hum (energy only below 1 kHz)."""
    rng = np.random.default_rng(seed)
    out = {}
    for i, seconds in enumerate(seconds_list):
        n = int(seconds * SR)
        t = np.arange(n) / SR
        kind = ("white", "voice_in_noise", "chirp", "hum")[i % 4]
        if kind == "white":
            wav = 0.1 * rng.standard_normal(n)
        elif kind == "voice_in_noise":
            f0 = 120 + 20 * np.sin(2 * np.pi * 0.5 * t)
            voice = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / SR) / k for k in range(1, 30))
            voice *= np.clip(np.sin(2 * np.pi * 3 * t), 0, None)
            brown = np.cumsum(rng.standard_normal(n))
            brown = (brown - np.convolve(brown, np.ones(400) / 400, mode="same")) * 0.01
            wav = 0.05 * voice + brown
            wav[n // 3: n // 2] = 0  # a silent stretch
        elif kind == "chirp":
            wav = 0.2 * np.sin(2 * np.pi * (100 * t + 3000 * t ** 2 / max(seconds, 1e-3)))
        else:
            wav = 0.3 * np.sin(2 * np.pi * 50 * t) + 0.1 * np.sin(2 * np.pi * 150 * t) + 0.003 * rng.standard_normal(n)
        out[f"{kind}_{seconds:g}s"] = np.clip(wav, -0.99, 0.99).astype(np.float32)
    return out


def file_at(tmp_path, name, wav) -> str:
    path = tmp_path / f"{name}.wav"
    sf.write(path, wav, SR, subtype="PCM_16")
    return str(path)


def cosine(a, b) -> float:
    return float(F.cosine_similarity(a.double().flatten(), b.double().flatten(), dim=0))


class AudioOnlyCLAP(torch.nn.Module):
    """laion-clap's CLAP model with only its audio side: its own get_audio_embedding / encode_audio code."""

    def __init__(self, tower, head):
        super().__init__()
        self.audio_branch, self.audio_projection = tower, head
        model = clap_submodule("model").CLAP
        self.get_audio_embedding = model.get_audio_embedding.__get__(self)
        self.encode_audio = model.encode_audio.__get__(self)


def laion_file_pipeline(path: str, max_len: int = 480000) -> torch.Tensor:
    """laion-clap 1.1.7 get_audio_embedding_from_filelist, non-fusion: librosa.load(sr=48000) (soxr_hq),
    int16 quantisation, and get_audio_features' repeat-pad (data_filling='repeatpad'). Clips over 10 s are
    cut to their centre here (laion-clap's 'rand_trunc' draws the start; we fix it, deterministically)."""
    wav, _ = librosa.load(path, sr=48000)
    wav = (np.clip(wav, -1.0, 1.0) * 32767.0).astype(np.int16).astype(np.float32) / 32767.0
    audio = torch.from_numpy(wav)
    if len(audio) > max_len:
        start = (len(audio) - max_len) // 2
        audio = audio[start:start + max_len]
    elif len(audio) < max_len:
        audio = audio.repeat(int(max_len / len(audio)))
        audio = F.pad(audio, (0, max_len - len(audio)))
    return {"waveform": audio}


@pytest.fixture(scope="module")
def clap_file(tmp_path_factory):
    torch.manual_seed(0)
    tower, head = build_tower(audio_config("HTSAT-tiny")).eval(), clap_projection(768).eval()
    path = tmp_path_factory.mktemp("clap") / "630k-audioset-best.pt"
    torch.save({"state_dict": {**{f"module.audio_branch.{k}": v for k, v in tower.state_dict().items()},
                               **{f"module.audio_projection.{k}": v for k, v in head.state_dict().items()}}}, path)
    return path, AudioOnlyCLAP(tower, head)


def test_clap_input_path_matches_laion_clap_file_pipeline(clap_file, tmp_path):
    path, laion = clap_file
    enc = build_encoder("clap", weights=str(path), embed_dim=8, cache_size=0)
    for name, wav in clips([0.25, 1.0, 3.7, 12.0]).items():
        wav = librosa.load(file_at(tmp_path, name, wav), sr=SR)[0]  # what our data loader reads from that file
        with torch.no_grad():
            ours = enc.tower_embedding(torch.from_numpy(wav)[None])[0]
            theirs = laion.get_audio_embedding([laion_file_pipeline(str(tmp_path / f"{name}.wav"))])
        assert cosine(ours, theirs) >= 0.9999, (name, cosine(ours, theirs))


def test_mel_filters_say_the_rate_and_mismatches_are_refused():
    release = audio_config("PANN-14", sample_rate=32000, hop_size=320)
    clap_pann = audio_config("PANN-14")  # laion-clap's own: 48 kHz, hop 480
    state48 = {"logmel_extractor.melW": mel_filters(clap_pann)}
    check_front_end(state48, clap_pann, "clap_pann.pt")  # matches: nothing said
    with pytest.raises(WeightsError, match=r"48000 Hz front end.*configured for 32000 Hz.*"
                                           r"sample_rate=48000 encoder.audio_cfg.hop_size=480 encoder.min_seconds=10"):
        check_front_end(state48, release, "clap_pann.pt")
    with pytest.raises(WeightsError, match=r"32000 Hz front end.*sample_rate=32000 encoder.audio_cfg.hop_size=320"):
        check_front_end({"logmel_extractor.melW": mel_filters(release)}, clap_pann, "Cnn14.pth")
    assert (mel_filters(release).shape == mel_filters(clap_pann).shape  # why a mismatch loads silently
            and not torch.allclose(mel_filters(release), mel_filters(clap_pann), atol=1e-6))


@pytest.mark.slow  # two CNN14 builds (81 M parameters each)
def test_panns_release_and_clap_pann_checkpoints(tmp_path):
    torch.manual_seed(0)
    cnn14 = build_tower(audio_config("PANN-14", sample_rate=32000, hop_size=320)).eval()
    torch.save({"model": cnn14.state_dict()}, tmp_path / "Cnn14_mAP=0.431.pth")
    release = build_encoder("panns", weights=str(tmp_path / "Cnn14_mAP=0.431.pth"), embed_dim=8, cache_size=0)
    for name, wav in clips([1.0, 2.5, 6.0, 10.0], seed=1).items():  # 1-10 s: the release runs the whole clip
        path = file_at(tmp_path, name, wav)
        with torch.no_grad():
            ours = release.tower_embedding(torch.from_numpy(librosa.load(path, sr=SR)[0])[None])[0]
            theirs = cnn14({"waveform": torch.from_numpy(librosa.load(path, sr=32000)[0])[None]})["embedding"]
        assert cosine(ours, theirs) >= 0.9999, (name, cosine(ours, theirs))
    del cnn14, release
    # A LAION-CLAP checkpoint with a PANN audio branch: 48 kHz filters, hop 480, 10 s fill, recognised.
    pann48, head = build_tower(audio_config("PANN-14")).eval(), clap_projection(2048).eval()
    torch.save({"state_dict": {**{f"audio_branch.{k}": v for k, v in pann48.state_dict().items()},
                               **{f"audio_projection.{k}": v for k, v in head.state_dict().items()}}},
               tmp_path / "clap_pann.pt")
    enc = build_encoder("panns", weights=str(tmp_path / "clap_pann.pt"), joint_projection=True, embed_dim=8)
    assert (enc.sample_rate, enc.min_samples) == (48000, 480000)
    wav = torch.from_numpy(clips([3.0])["white_3s"])[None]
    x = librosa.resample(wav.numpy(), orig_sr=SR, target_sr=48000, res_type="soxr_hq")
    x = torch.from_numpy(np.tile(x, (1, 3)))
    x = F.pad(x, (0, 480000 - x.shape[-1]))
    with torch.no_grad():
        expected = F.normalize(head(pann48({"waveform": x})["embedding"]), dim=-1)
        assert cosine(enc.tower_embedding(wav)[0], expected) >= 0.9999
    with pytest.raises(WeightsError, match="48000 Hz front end"):
        build_encoder("panns", weights=str(tmp_path / "clap_pann.pt"), joint_projection=True,
                      audio_cfg={"sample_rate": 32000, "hop_size": 320})
