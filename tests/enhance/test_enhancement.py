import pytest
import torch

from sgmse_nc.enhance.core import chunk_bounds, overlap_add


@pytest.mark.parametrize("length", [100, 999, 1000, 1001, 1000 + 600 + 1, 3333, 5000])
def test_chunks_cover_the_signal_and_overlap_add_reconstructs_it(length):
    chunk, overlap = 1000, 400  # length chunk + hop + 1 makes three chunks overlap at some samples
    signal = torch.randn(length)
    bounds = chunk_bounds(length, chunk, overlap)
    assert bounds[0][0] == 0 and bounds[-1][1] == length
    assert all(b - a == min(chunk, length) for a, b in bounds)
    assert all(a2 <= b1 for (_, b1), (a2, _) in zip(bounds, bounds[1:]))  # no gaps
    joined = overlap_add([signal[a:b] for a, b in bounds], bounds, length, overlap)
    assert torch.allclose(joined, signal, atol=1e-6)


def test_overlap_add_cross_fades_disagreeing_chunks():
    bounds = [(0, 6), (4, 10)]
    joined = overlap_add([torch.zeros(6), torch.ones(6)], bounds, 10, ramp=2)
    assert torch.equal(joined[:4], torch.zeros(4)) and torch.equal(joined[6:], torch.ones(4))
    assert 0 < joined[4] < joined[5] < 1  # a ramp, not a jump


def test_enhance_long_files_in_chunks_keeps_lengths():
    from sgmse_nc.config import build_model_from_config
    from sgmse_nc.enhance.core import enhance

    model = build_model_from_config(["backbone=ncsnpp_tiny", "encoder=cnn"]).eval()
    noisy = [0.1 * torch.randn(21000), 0.1 * torch.randn(5000)]
    refs = [0.1 * torch.randn(4000), None]  # a file without reference gets the null condition
    out = enhance(model, noisy, refs, batch_size=3, chunk_seconds=0.5, overlap_seconds=0.1, N=2, guidance_scale=1.5)
    assert [o.numel() for o in out] == [21000, 5000]
    assert all(torch.isfinite(o).all() for o in out)


@pytest.fixture
def identity_model(monkeypatch):
    """A conditional tiny model whose sampler returns its input: enhance() must then give back the input."""
    from sgmse_nc.config import build_model_from_config

    model = build_model_from_config(["backbone=ncsnpp_tiny", "encoder=cnn"]).eval()
    monkeypatch.setattr(model, "enhance_spec", lambda y, cond=None, **kw: y)
    return model


def test_enhance_with_an_identity_sampler_returns_the_input(identity_model):
    from sgmse_nc.enhance.core import enhance

    g = torch.Generator().manual_seed(0)
    # different lengths (the batches are sorted by chunk length), peaks (per-file normalisation) and chunk counts
    noisy = [a * torch.randn(n, generator=g) for a, n in ((0.3, 21000), (0.02, 5000), (0.9, 12345), (0.1, 800))]
    refs = [0.1 * torch.randn(4000, generator=g), None, 0.1 * torch.randn(3000, generator=g), None]
    out = enhance(identity_model, noisy, refs, batch_size=3, chunk_seconds=0.5, overlap_seconds=0.1)
    for wav, enhanced in zip(noisy, out):
        torch.testing.assert_close(enhanced, wav, rtol=0, atol=1e-6 * wav.abs().max().item())
    whole = enhance(identity_model, noisy, refs, batch_size=2)  # no chunking: one batch item per file
    for wav, enhanced in zip(noisy, whole):
        torch.testing.assert_close(enhanced, wav, rtol=0, atol=1e-6 * wav.abs().max().item())


def test_enhance_folder_resamples_and_returns_the_input_rate(tmp_path, monkeypatch, identity_model, speech,
                                                           tiny_ckpt):
    import soundfile as sf

    from sgmse_nc.audio import read_audio, write_audio
    from sgmse_nc.enhance.folder import EnhanceOptions, enhance_folder
    from sgmse_nc.errors import UserError
    from sgmse_nc.diffusion.model import ScoreModel

    monkeypatch.setattr(ScoreModel, "load_for_inference", classmethod(lambda cls, *a, **kw: identity_model))
    noisy = tmp_path / "noisy"
    low = speech(1.5, sr=8000, seed=1)  # harmonics below 1.2 kHz: a resampling round trip keeps them
    write_audio(noisy / "low.wav", low, 8000)
    write_audio(noisy / "sub" / "wide.wav", speech(1.2, seed=2), 16000)
    with pytest.raises(UserError, match="8000 Hz.*low.wav"):
        enhance_folder(tiny_ckpt, noisy, tmp_path / "refused")
    summary = enhance_folder(tiny_ckpt, noisy, tmp_path / "out", EnhanceOptions(resample=True))
    assert summary["enhanced"] == 2
    for name, rate in (("low.wav", 8000), ("sub/wide.wav", 16000)):
        src, out = sf.info(noisy / name), sf.info(tmp_path / "out" / name)
        assert (out.samplerate, out.frames) == (rate, src.frames)
    wide = read_audio(tmp_path / "out" / "sub" / "wide.wav")
    torch.testing.assert_close(wide, read_audio(noisy / "sub" / "wide.wav"), rtol=0, atol=2 / 32768)
    back = read_audio(tmp_path / "out" / "low.wav", 8000)
    edge = 200  # the resampling filters' transients at the ends
    error = (back - read_audio(noisy / "low.wav", 8000))[edge:-edge]
    assert error.abs().max() < 0.01 * low.abs().max()


def test_batch_plan_never_pads_an_item_beyond_its_own_need():
    """Mixed lengths are bucketed by padded length: every item of a batch needs exactly the batch's frames,
    and a bucket fills whole batches (only its last may be short)."""
    import random

    from sgmse_nc.enhance.core import Plan, chunk_samples

    rng = random.Random(0)
    lengths = [rng.randrange(600, 16000 * 45) for _ in range(60)]
    plan = Plan.make(lengths, [0] * len(lengths), *chunk_samples(20.0, 16000, 0.5), batch_size=4, hop=128,
                     multiple=64)
    need = lambda u: -(-((u.stop - u.start) // 128 + 1) // 64) * 64  # noqa: E731
    per_frames = {}
    for batch in plan.batches:
        assert 1 <= len(batch) <= 4 and {u.frames for u in batch} == {need(u) for u in batch}
        assert len({u.frames for u in batch}) == 1
        per_frames.setdefault(batch[0].frames, []).append(len(batch))
    for sizes in per_frames.values():
        assert all(size == 4 for size in sizes[:-1])
    units = [(u.stream, u.start) for batch in plan.batches for u in batch]
    assert len(units) == len(set(units)) == sum(plan.units_of(s) for s in range(len(lengths)))
