"""LAION-CLAP / PANNs audio towers: checkpoints in the published formats (written here with random weights from
laion-clap's own classes), frozen vs fine-tuned, eval mode, cache, no network, clear errors."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from sgmse_nc.config import build_model_from_config
from sgmse_nc.encoders import build_encoder
from sgmse_nc.encoders.laion import WeightsError, audio_config, build_tower
from sgmse_nc.encoders.pretrained import fill_clip, resample_to
from sgmse_nc.diffusion.model import ScoreModel
from tests.scripts.fit_tiny import main as fit_tiny
from tests.helpers import REPO_ROOT, clap_checkpoint

ROOT = REPO_ROOT


@pytest.fixture(scope="module")
def clap_ckpt(tmp_path_factory):
    return clap_checkpoint(tmp_path_factory.mktemp("clap") / "630k-audioset-best.pt")


@pytest.fixture(scope="module")
def frozen(clap_ckpt):
    return build_encoder("clap", weights=str(clap_ckpt[0]), embed_dim=32)


def refs(b=2, seconds=0.25, seed=0):
    return 0.1 * torch.randn(b, int(16000 * seconds), generator=torch.Generator().manual_seed(seed))


def test_fill_rules_repeat_pad_and_centred_crop():
    wav = torch.arange(1.0, 4.0).expand(2, 3)
    filled = fill_clip(wav, 8, 8)
    assert filled[0].tolist() == [1, 2, 3, 1, 2, 3, 0, 0]  # CLAP's repeatpad: whole repeats, then zeros
    long = torch.arange(20.0)[None]
    assert fill_clip(long, 8, 8)[0].tolist() == list(range(6, 14))  # centred, the same every time
    assert torch.equal(fill_clip(long, 4, 30), long)


def test_checkpoint_round_trip_names_shapes_and_outputs(clap_ckpt, frozen):
    _, tower, head = clap_ckpt
    loaded_tower, loaded_head = frozen.tower_modules
    for ref, got in ((tower, loaded_tower), (head, loaded_head)):
        a, b = ref.state_dict(), got.state_dict()
        assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert sum(p.numel() for p in loaded_tower.parameters()) > 31e6  # HTSAT-tiny
    r_wav = refs()  # 0.25 s = 12000 samples at 48 kHz: 40 whole repeats fill the 10 s clip
    x = resample_to(r_wav, 48000).repeat(1, 40)
    with torch.no_grad():
        expected = torch.nn.functional.normalize(head(tower({"waveform": x}, device="cpu")["embedding"]), dim=-1)
        assert torch.allclose(frozen.tower_embedding(r_wav)[0], expected, atol=1e-6)
    assert expected.shape == (2, 512)


def test_frozen_tower_no_grads_not_in_parameters_or_state_dict_and_always_eval(frozen):
    params = dict(frozen.named_parameters())
    assert set(params) == {n for n, _ in frozen.proj.named_parameters(prefix="proj")}
    assert set(frozen.state_dict()) == set(frozen.proj.state_dict(prefix="proj.")) | {"weights_sha256"}
    model_like = torch.nn.Sequential(frozen)
    model_like.train()
    assert frozen.training and not any(m.training for m in frozen.tower_modules.modules())
    z = frozen(None, refs())
    assert z.shape == (2, 32) and torch.isfinite(z).all()
    z.square().sum().backward()
    assert all(p.grad is not None for p in frozen.proj.parameters())
    assert all(p.grad is None and not p.requires_grad for p in frozen.tower_modules.parameters())
    frozen.zero_grad(set_to_none=True)


def test_cache_returns_the_fresh_embedding_and_skips_the_tower(frozen, monkeypatch):
    frozen._cache.clear()
    r_wav = refs(3, seed=5)
    with torch.no_grad():
        fresh = frozen.tower_embedding(r_wav)[0]
        first = frozen(None, r_wav)
    calls = []
    original = frozen.tower_embedding
    monkeypatch.setattr(frozen, "tower_embedding", lambda w: calls.append(w.shape[0]) or original(w))
    with torch.no_grad():
        again = frozen(None, torch.cat([r_wav[1:], refs(1, seed=9)]))  # two cached, one new
        assert torch.equal(frozen.proj(fresh), first)
        assert torch.equal(again[:2], first[1:])
    assert calls == [1]
    with pytest.raises(WeightsError, match="not the HTSAT-tiny weight file"):
        other = frozen.state_dict()
        other["weights_sha256"] = torch.ones(32, dtype=torch.uint8)
        frozen.load_state_dict(other)


def test_fine_tuned_tower_gets_gradients_and_every_trainable_parameter_is_used(clap_ckpt):
    enc = build_encoder("clap", weights=str(clap_ckpt[0]), embed_dim=16, freeze=False)
    enc.train()
    assert not any(m.training for m in enc.tower_modules.modules())  # no SpecAugment / BN updates
    enc(None, refs()).square().sum().backward()
    trainable = {n: p for n, p in enc.named_parameters() if p.requires_grad}
    assert any(n.startswith("towers.0.layers") for n in trainable)
    unused = [n for n, p in trainable.items() if p.grad is None]
    assert not unused, unused  # DDP without find_unused_parameters needs this
    assert enc.towers[0].layers[0].blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    assert not enc.towers[0].head.weight.requires_grad  # the clip-wise classifier never reaches z


def test_clap_frame_tokens_global_and_cached(frozen, clap_ckpt):
    enc = build_encoder("clap", weights=str(clap_ckpt[0]), embed_dim=32, tokens=True, num_tokens=8, token_dim=24)
    assert (enc.embed_dim, enc.token_dim, enc.num_tokens) == (32, 24, 8)
    r_wav = refs(2, seconds=3.0)  # 3 s: the 10 s clip is three repeats and zeros, so the frames differ
    with torch.no_grad():
        cond = enc(None, r_wav)
        again = enc(None, r_wav)  # from the cache
        _, frames = enc.tower_embedding(r_wav)
    assert cond.embedding.shape == (2, 32) and cond.tokens.shape == (2, 8, 24)
    assert frames.shape == (2, 8, 768) and not torch.allclose(frames[:, 0], frames[:, -1])
    assert torch.equal(again.tokens, cond.tokens) and torch.equal(again.embedding, cond.embedding)


def test_missing_and_wrong_weight_files(tmp_path):
    with pytest.raises(WeightsError, match=r"not found.*encoder\.weights="):
        build_encoder("clap", weights=str(tmp_path / "nope.pt"))
    with pytest.raises(WeightsError, match="set encoder.weights"):
        build_encoder("clap")
    torch.save({"state_dict": {"conv.weight": torch.zeros(2)}}, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="not a LAION-CLAP checkpoint"):
        build_encoder("clap", weights=str(tmp_path / "other.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot be read"):
        build_encoder("clap", weights=str(tmp_path / "junk.pt"))


def test_wrong_tower_size_is_reported(clap_ckpt):
    with pytest.raises(WeightsError, match="other shapes|missing"):
        build_encoder("clap", tower="HTSAT-base", weights=str(clap_ckpt[0]))


@pytest.mark.slow  # builds CNN14 (81 M parameters) twice
def test_panns_original_release_format(tmp_path):
    torch.manual_seed(0)
    cnn14 = build_tower(audio_config("PANN-14", sample_rate=32000, hop_size=320)).eval()
    torch.save({"model": cnn14.state_dict(), "iteration": 1}, tmp_path / "Cnn14_mAP=0.431.pth")
    enc = build_encoder("panns", weights=str(tmp_path / "Cnn14_mAP=0.431.pth"), embed_dim=8)
    assert enc.proj[0].in_features == 2048
    got = enc.tower_modules[0].state_dict()
    assert all(torch.equal(v, got[k]) for k, v in cnn14.state_dict().items())
    r_wav = refs(2, seconds=0.5)
    x = resample_to(r_wav, 32000).repeat(1, 2)  # filled to the 1 s minimum
    with torch.no_grad():
        torch.testing.assert_close(enc.tower_embedding(r_wav)[0], cnn14({"waveform": x})["embedding"])
        assert enc(None, r_wav).shape == (2, 8)
    with pytest.raises(WeightsError, match="not a LAION-CLAP checkpoint"):
        build_encoder("panns", weights=str(tmp_path / "Cnn14_mAP=0.431.pth"), joint_projection=True)


NO_NETWORK = textwrap.dedent("""
    import socket, sys
    def refuse(*a, **k):
        raise RuntimeError("network access attempted")
    socket.socket.connect = refuse
    socket.create_connection = refuse
    import torch
    from sgmse_nc.encoders import build_encoder
    enc = build_encoder("clap", weights=sys.argv[1], embed_dim=8)
    z = enc(None, 0.1 * torch.randn(1, 4000))
    assert z.shape == (1, 8)
    assert "laion_clap" not in sys.modules  # the package's __init__ never ran
    print("ok")
""")


def test_clap_builds_and_runs_without_network(clap_ckpt):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env["PYTHONPATH"] = str(ROOT)
    cmd = [sys.executable, "-c", NO_NETWORK, str(clap_ckpt[0])]
    if os.geteuid() == 0 and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:
        cmd = ["unshare", "-n", *cmd]  # no network interface at all; the socket guard covers other hosts
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]


def test_score_model_with_frozen_clap_checkpoints_without_the_tower(clap_ckpt, tmp_path):
    overrides = ["backbone=ncsnpp_tiny", "encoder=clap", f"encoder.weights={clap_ckpt[0]}", "encoder.embed_dim=16"]
    model = build_model_from_config(overrides)
    assert not [k for k in model.state_dict() if "towers" in k]
    assert sum(p.numel() for p in model.parameters()) < 1e6  # tower not in parameters: no optimizer/EMA state
    other, _, _ = clap_checkpoint(tmp_path / "other.pt", seed=1)
    swapped = build_model_from_config([*overrides[:2], f"encoder.weights={other}", "encoder.embed_dim=16"])
    with pytest.raises(WeightsError, match="trained with"):
        swapped.load_state_dict(model.state_dict())


@pytest.mark.slow  # ~40 s: three HTSAT builds (train, two reloads)
def test_tiny_training_run_frozen_clap_checkpoint_and_reload(clap_ckpt, tmp_path):
    weights = tmp_path / "clap.pt"
    weights.write_bytes(clap_ckpt[0].read_bytes())
    trained = fit_tiny(str(tmp_path), "1", "encoder=clap", f"encoder.weights={weights}", "encoder.embed_dim=16",
                       "model.cond_drop_prob=0.5")
    ckpt = tmp_path / "last.ckpt"
    assert ckpt.stat().st_size < 20e6  # the 31 M-parameter tower (125 MB) is not in it
    moved = tmp_path / "moved" / "630k-audioset-best.pt"
    moved.parent.mkdir()
    weights.rename(moved)
    with pytest.raises(WeightsError, match="not found"):
        ScoreModel.load_for_inference(ckpt)
    model = ScoreModel.load_for_inference(ckpt, encoder_weights=moved, use_ema=False)
    r_wav = refs(1)
    with torch.no_grad():
        assert torch.equal(model.encoder(None, r_wav), trained.encoder.eval()(None, r_wav))
    other, _, _ = clap_checkpoint(tmp_path / "other.pt", seed=3)
    with pytest.raises(WeightsError, match="trained with"):
        ScoreModel.load_for_inference(ckpt, encoder_weights=other)


@pytest.mark.slow  # builds CNN14 (81 M parameters)
def test_tiny_training_run_frozen_panns(tmp_path):
    torch.manual_seed(0)
    cnn14 = build_tower(audio_config("PANN-14", sample_rate=32000, hop_size=320))
    torch.save({"model": cnn14.state_dict()}, tmp_path / "cnn14.pth")
    fit_tiny(str(tmp_path), "1", "encoder=panns", f"encoder.weights={tmp_path / 'cnn14.pth'}", "encoder.embed_dim=16")
    assert ScoreModel.load_for_inference(tmp_path / "last.ckpt").encoder.proj[0].in_features == 2048
