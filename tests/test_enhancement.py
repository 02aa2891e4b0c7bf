import pytest
import torch

from sgmse_nc.enhancement import chunk_bounds, overlap_add


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
    from sgmse_nc.enhancement import enhance

    model = build_model_from_config(["backbone=ncsnpp_tiny", "encoder=cnn"]).eval()
    noisy = [0.1 * torch.randn(21000), 0.1 * torch.randn(5000)]
    refs = [0.1 * torch.randn(4000), None]  # a file without reference gets the null condition
    out = enhance(model, noisy, refs, batch_size=3, chunk_seconds=0.5, overlap_seconds=0.1, N=2, guidance_scale=1.5)
    assert [o.numel() for o in out] == [21000, 5000]
    assert all(torch.isfinite(o).all() for o in out)
