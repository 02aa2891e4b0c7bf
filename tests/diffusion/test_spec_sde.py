import math

import torch

from sgmse_nc.diffusion.sde import OUVESDE, SBVESDE, build_sde, data_prediction_loss, score_matching_loss
from sgmse_nc.spec import Spectrogram, pad_frames, peak_normalise


def test_spectrogram_round_trip_is_exact(speech):
    spec = Spectrogram()
    wav = speech(1.3)
    s = spec.to_spec(wav)
    assert s.shape == (256, 1 + wav.numel() // 128) and s.is_complex()
    back = spec.to_wav(s, length=wav.numel())
    assert torch.max(torch.abs(back - wav)) < 1e-5
    # batched input gives the same as one by one
    both = spec.to_spec(torch.stack([wav, 0.5 * wav]))
    assert torch.allclose(both[0], s, atol=1e-6)


def test_compression_follows_sgmse_formula():
    spec = Spectrogram()
    X = torch.tensor([4.0 + 0j, -9j])
    Z = spec.compress(X)
    assert torch.allclose(Z.abs(), 0.15 * X.abs().sqrt())
    assert torch.allclose(Z.angle(), X.angle())
    assert torch.allclose(spec.decompress(Z), X, atol=1e-6)


def test_training_crop_is_256_frames_and_padding_rule():
    spec = Spectrogram()
    assert spec.to_spec(torch.zeros(spec.num_samples(256))).shape[-1] == 256
    assert pad_frames(torch.zeros(1, 1, 256, 100)).shape[-1] == 128
    assert pad_frames(torch.zeros(1, 1, 256, 128)).shape[-1] == 128
    y, f = peak_normalise(torch.tensor([[0.1, -0.4, 0.2]]))
    assert torch.isclose(y.abs().max(), torch.tensor(1.0)) and torch.isclose(f.squeeze(), torch.tensor(0.4))


def test_ouve_marginals_match_simulated_forward_sde():
    sde = OUVESDE()
    gen = torch.Generator().manual_seed(0)
    n, steps, t_end = 40000, 400, 0.6
    x0, y = torch.full((n,), 0.8), torch.full((n,), -0.4)
    x, dt = x0.clone(), t_end / steps
    for i in range(steps):
        t = torch.full((n,), i * dt)
        drift, g = sde.sde(x, y, t)
        x = x + drift * dt + g * math.sqrt(dt) * torch.randn(n, generator=gen)
    mean, std = sde.marginal_prob(x0[:1], y[:1], torch.tensor([t_end]))
    assert abs(x.mean().item() - mean.item()) < 0.01
    assert abs(x.std().item() - std.item()) < 0.01 * std.item() + 0.003


def test_ouve_closed_forms():
    sde = OUVESDE()
    t = torch.tensor([1e-6, 0.5, 1.0])
    std = sde.std(t)
    assert std[0] < 1e-3 and torch.all(std[1:] > std[:-1])
    # std(1) for the SGMSE+ parameters
    expected = math.sqrt(0.05**2 * math.exp(-3) * (math.exp(2 * (1.5 + math.log(10))) - 1)
                         * math.log(10) / (1.5 + math.log(10)))
    assert abs(std[-1].item() - expected) < 1e-5
    x0, y = torch.ones(3, 1, 2, 2), torch.zeros(3, 1, 2, 2)
    m = sde.mean(x0, y, t)
    assert torch.allclose(m[:, 0, 0, 0], torch.exp(-1.5 * t))
    ts = sde.sample_time(1000, "cpu")
    assert ts.min() >= 0.03 and ts.max() <= 1.0


def test_score_matching_loss_is_zero_for_the_true_score():
    sde = OUVESDE()
    x0 = torch.randn(4, 1, 8, 8, dtype=torch.complex64)
    y = torch.randn(4, 1, 8, 8, dtype=torch.complex64)
    t = torch.full((4,), 0.5)
    x_t, z, std = sde.perturb(x0, y, t)
    true_score = -(x_t - sde.mean(x0, y, t)) / std.view(-1, 1, 1, 1) ** 2
    assert score_matching_loss(true_score, z, std) < 1e-8
    assert score_matching_loss(torch.zeros_like(x_t), z, std) > 0


def test_sb_marginals_are_the_reference_process_pinned_at_y():
    # x_t = x0 + W_t with Var W_t = ∫ g² (integrated numerically from the SDE's diffusion), conditioned on
    # x_T = y: Gaussian conditioning gives mean x0 + (s_t/s_T)(y − x0) and variance s_t − s_t²/s_T.
    sde = SBVESDE()
    grid = torch.linspace(0, 1, 20001, dtype=torch.float64)
    var = torch.cat([grid.new_zeros(1), torch.cumulative_trapezoid(sde.diffusion(grid) ** 2, grid)])
    idx = torch.tensor([0, 3000, 10000, 17000, 20000])
    t, s_t, s_T = grid[idx], var[idx], var[-1]
    x0, y = torch.full((5, 1, 1, 1), 0.8, dtype=torch.float64), torch.full((5, 1, 1, 1), -0.4, dtype=torch.float64)
    mean, std = sde.marginal_prob(x0, y, t)
    assert torch.allclose(mean.flatten(), 0.8 + s_t / s_T * (-0.4 - 0.8), atol=1e-6)
    assert torch.allclose(std, (s_t - s_t**2 / s_T).clamp_min(0).sqrt(), atol=1e-4)
    assert torch.equal(sde.prior_sampling(y), y)  # the bridge ends at y: no noise at T


def test_build_sde_by_name_and_clear_error():
    assert isinstance(build_sde(), OUVESDE) and isinstance(build_sde("sb", k=2.6, c=0.4), SBVESDE)
    try:
        build_sde("bbed")
    except ValueError as err:
        assert "ouve" in str(err) and "sb" in str(err)
    else:
        raise AssertionError("expected ValueError")


def test_data_prediction_loss_is_sgmse_formula():
    spec = Spectrogram()
    x0 = spec.to_spec(torch.randn(2, 4000, generator=torch.Generator().manual_seed(0))).unsqueeze(1)
    x_hat = x0 + 0.1 * torch.randn(x0.shape, dtype=x0.dtype, generator=torch.Generator().manual_seed(1))
    assert data_prediction_loss(x0, x0, spec.to_wav) == 0
    tf = 0.5 * (x_hat - x0).abs().pow(2).mean()
    td = 0.5 * (spec.to_wav(x_hat.squeeze(1)) - spec.to_wav(x0.squeeze(1))).abs().mean()
    assert torch.isclose(data_prediction_loss(x_hat, x0, spec.to_wav, l1_weight=0.5), tf + 0.5 * td)
