"""Mixed precision on the CPU (autocast runs the same float16 / bfloat16 casts as Lightning's 16-mixed and
bf16-mixed on a GPU): every encoder trains with finite loss, gradients and weights; the pre-trained towers run
in float32 whatever the autocast (their float16 log-mel front end turns empty mel cells into -inf, then NaN),
and a non-finite embedding is an error, never a cached value."""
import pytest
import torch

from sgmse_nc.config import build_model_from_config
from sgmse_nc.encoders import build_encoder
from sgmse_nc.encoders.pretrained import EmbeddingError

PRECISIONS = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}
# A small spectrogram (n_fft 126: 64 bins) keeps a float16 CPU step affordable; towers see 16 kHz waveforms.
SMALL = ["backbone=ncsnpp_tiny", "spec.n_fft=126", "spec.hop_length=32"]
ENCODERS = {
    "none": ["encoder=none"],
    "cnn": ["encoder=cnn", "encoder.embed_dim=16", "encoder.channels=[8,8,8,8]"],
    "sequence_xattn": ["encoder=sequence", "encoder.token_dim=16", "encoder.channels=[8,8,8,8]",
                       "backbone.xattn_resolutions=[8]"],
    "clap": ["encoder=clap", "encoder.weights=null", "+encoder.random_init=true", "encoder.embed_dim=16",
             "encoder.min_seconds=2", "encoder.max_seconds=2"],
    "panns": ["encoder=panns", "encoder.weights=null", "+encoder.random_init=true", "encoder.embed_dim=16"],
}


def real_like_references(batch: int = 2, seconds: float = 0.5) -> torch.Tensor:
    """16 kHz noise with a silent stretch: empty mel cells above 8 kHz and in the gap (what broke float16)."""
    g = torch.Generator().manual_seed(1)
    wav = 0.05 * torch.randn(batch, int(16000 * seconds), generator=g)
    wav[:, wav.shape[1] // 3: wav.shape[1] // 2] = 0
    return wav


def small_batch(batch: int = 2) -> dict:
    g = torch.Generator().manual_seed(0)
    c = lambda *s: 0.1 * torch.randn(*s, dtype=torch.complex64, generator=g)
    x = c(batch, 1, 64, 32)
    return {"x": x, "y": x + c(batch, 1, 64, 32), "r": c(batch, 1, 64, 16), "r_wav": real_like_references(batch)}


def cosine(a, b):
    return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("encoder", [pytest.param(e, marks=pytest.mark.slow) if e == "panns" else e for e in ENCODERS])
def test_training_step_is_finite_under_mixed_precision(encoder, precision):
    torch.manual_seed(0)
    model = build_model_from_config([*SMALL, "sde=ouve", "sampler=ode", *ENCODERS[encoder]]).train()
    optimizer = model.configure_optimizers()
    batch = small_batch()
    with torch.autocast("cpu", dtype=PRECISIONS[precision]):
        loss = model._loss(batch)
        cond = model.encode_batch(batch)
    assert torch.isfinite(loss), (encoder, precision, loss)
    if cond is not None:
        assert all(torch.isfinite(v).all() for v in (cond.embedding, cond.tokens) if v is not None)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert grads and all(torch.isfinite(g).all() for g in grads.values()), encoder
    optimizer.step()
    model.ema.update(model)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert all(torch.isfinite(v).all() for v in model.ema.state_dict().values() if torch.is_tensor(v))
    cache = getattr(model.encoder, "_cache", {})
    assert all(torch.isfinite(z).all() for z, _ in cache.values())  # the frozen cache holds finite entries only
# (panns is slow here: a CNN14 build per precision; its tower runs under both precisions in the test below)


@pytest.fixture(scope="module")
def towers():
    torch.manual_seed(0)
    common = dict(random_init=True, embed_dim=8, cache_size=0, tokens=True, num_tokens=4, token_dim=8)
    return {"clap": build_encoder("clap", min_seconds=3, max_seconds=3, **common),
            "panns": build_encoder("panns", **common)}


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("name", ["clap", "panns"])
def test_tower_embeddings_under_autocast_equal_float32(towers, name, precision):
    enc, r_wav = towers[name], real_like_references(2, seconds=1.5)
    with torch.no_grad():
        z32, frames32 = enc.tower_embedding(r_wav)
        with torch.autocast("cpu", dtype=PRECISIONS[precision]):
            z, frames = enc.tower_embedding(r_wav)
            out = enc(None, r_wav)
    assert z.dtype == torch.float32 and torch.isfinite(z).all() and torch.isfinite(frames).all()
    assert (cosine(z, z32) >= 0.9999).all(), cosine(z, z32)
    assert (cosine(frames.flatten(1), frames32.flatten(1)) >= 0.9999).all()
    assert torch.isfinite(out.embedding).all() and torch.isfinite(out.tokens).all()


def test_frozen_cache_under_float16_stores_finite_embeddings_and_refuses_nan(towers):
    enc = build_encoder("clap", random_init=True, embed_dim=8, min_seconds=2, max_seconds=2)
    r_wav = real_like_references(2)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.float16):
        enc(None, r_wav)
        assert len(enc._cache) == 2 and all(torch.isfinite(z).all() for z, _ in enc._cache.values())
        broken = r_wav.clone()
        broken[1, 100] = float("nan")
        with pytest.raises(EmbeddingError, match="reference 1 of the batch.*NaN/inf.*not cached"):
            enc(None, broken)
    assert len(enc._cache) == 2  # the NaN embedding was never cached


def test_non_finite_loss_is_left_to_the_guard():
    """The loss comes back non-finite (not raised): train.nonfinite.NonFiniteGuard skips that optimizer step, so
    it never reaches the weights, the EMA or a checkpoint (tests/train/test_nonfinite.py runs it in train.py)."""
    model = build_model_from_config([*SMALL, "sde=ouve", "sampler=ode", "encoder=none"])
    batch = small_batch()
    batch["y"] = batch["y"] * float("nan")
    assert not torch.isfinite(model.training_step(batch, 0))
