import torch

from sgmse_nc.condition import drop_condition, null_condition
from sgmse_nc.sampling import get_sampler, guided_score, ode_sampler, pc_sampler
from sgmse_nc.sde import OUVESDE
from tests.conftest import TinyScoreNet


def _y(b=2, f=8, t=16):
    return torch.randn(b, 1, f, t, dtype=torch.complex64, generator=torch.Generator().manual_seed(1))


def test_pc_and_ode_samplers_shape_finite_and_reproducible():
    net, sde, y = TinyScoreNet(), OUVESDE(), _y()
    score = guided_score(net, y, None, None)
    for sampler in (pc_sampler, ode_sampler):
        a, nfe = sampler(score, sde, y, N=5, generator=torch.Generator().manual_seed(3))
        b, _ = sampler(score, sde, y, N=5, generator=torch.Generator().manual_seed(3))
        assert a.shape == y.shape and torch.isfinite(torch.view_as_real(a)).all()
        assert torch.equal(a, b)
    assert pc_sampler(score, sde, y, N=5, corrector_steps=2)[1] == 15


def test_pc_sampler_with_true_score_recovers_the_clean_signal():
    # For data concentrated at x0 the exact score is known in closed form; the sampler must land near x0.
    sde = OUVESDE()
    y = _y(1, 4, 8)
    x0 = y * 0.2

    def true_score(x, t):
        std = sde.std(t).view(-1, 1, 1, 1)
        return -(x - sde.mean(x0, y, t)) / std**2

    x, _ = pc_sampler(true_score, sde, y, N=30, generator=torch.Generator().manual_seed(0))
    assert (x - x0).abs().mean() < 0.05 * y.abs().mean()


def test_guidance_w1_is_exactly_the_conditional_score():
    net = TinyScoreNet(cond_dim=3)
    y, x, t = _y(), _y(), torch.full((2,), 0.4)
    cond = torch.randn(2, 3)
    null = null_condition(cond)
    assert torch.equal(guided_score(net, y, cond, null, 1.0)(x, t), net(x, y, t, cond))
    s_c, s_u = net(x, y, t, cond), net(x, y, t, null)
    w = 2.5
    assert torch.allclose(guided_score(net, y, cond, null, w)(x, t), s_u + w * (s_c - s_u), atol=1e-6)


def test_guidance_w_not_1_is_one_batched_pass():
    calls = []
    net = TinyScoreNet(cond_dim=3)

    def counting(x, y, t, cond):
        calls.append(x.shape[0])
        return net(x, y, t, cond)

    cond = torch.randn(2, 3)
    guided_score(counting, _y(), cond, null_condition(cond), 2.0)(_y(), torch.full((2,), 0.4))
    assert calls == [4]


def test_condition_dropout_fraction():
    torch.manual_seed(0)
    z = torch.ones(20000, 4)
    dropped = (drop_condition(z, 0.2) == 0).all(dim=1).float().mean().item()
    assert abs(dropped - 0.2) < 0.01
    assert torch.equal(drop_condition(z, 0.0), z)
    assert drop_condition(None, 0.5) is None


def test_unknown_sampler_names_the_choices():
    try:
        get_sampler("euler")
    except ValueError as err:
        assert "pc" in str(err) and "ode" in str(err)
    else:
        raise AssertionError("expected ValueError")
