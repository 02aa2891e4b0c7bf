import pytest
import torch

from sgmse_nc.condition import drop_condition, null_condition
from sgmse_nc.diffusion.sampling import (SAMPLERS, as_prediction, get_sampler, get_timesteps, guided_score, sample,
                               sampler_settings)
from sgmse_nc.diffusion.sde import OUVESDE, SBVESDE
from tests.helpers import TinyScoreNet


def _y(b=2, f=8, t=16, dtype=torch.complex64):
    return torch.randn(b, 1, f, t, dtype=dtype, generator=torch.Generator().manual_seed(1))


def _sde_for(name):
    sdes = SAMPLERS[name].sdes
    return SBVESDE() if sdes == ("sb",) else OUVESDE()


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_shape_finite_reproducible_and_counts_evaluations(name):
    net, sde, y = TinyScoreNet(), _sde_for(name), _y()
    calls, steps = [], []

    def counting(x, t):
        calls.append(1)
        return guided_score(net, y, None, None)(x, t)

    a, nfe = sample(counting, "score", sde, y, name, N=4, generator=torch.Generator().manual_seed(3),
                    callback=lambda info: steps.append(info["i"]))
    b, _ = sample(counting, "score", sde, y, name, N=4, generator=torch.Generator().manual_seed(3))
    assert a.shape == y.shape and torch.isfinite(torch.view_as_real(a)).all()
    assert torch.equal(a, b)
    assert nfe == len(calls) // 2 and steps == [0, 1, 2, 3]
    assert nfe == {"pc": 8, "heun": 7}.get(name, 4)


def test_get_timesteps_range_order_and_rho():
    ts = get_timesteps(5, 1.0, 0.03)
    assert len(ts) == 6 and ts[0] == 1.0 and abs(ts[-2] - 0.03) < 1e-7 and ts[-1] == 0
    assert (ts[:-1] > ts[1:]).all()
    assert torch.allclose(ts[:-1], torch.linspace(1.0, 0.03, 5))  # rho = 1: SGMSE+'s linear schedule
    assert (get_timesteps(5, 1.0, 0.03, rho=3.0)[1:-2] < ts[1:-2]).all()  # rho > 1: more steps at small t
    with pytest.raises(ValueError, match="at least 1"):
        get_timesteps(0)


def test_sampler_settings_and_option_errors():
    saved = {"name": "pc", "N": 30, "snr": 0.5, "corrector_steps": 1}
    assert sampler_settings(saved) == saved
    assert sampler_settings(saved, N=10, snr=None) == {**saved, "N": 10}
    assert sampler_settings(saved, name="heun", snr=None, corrector_steps=None) == {"name": "heun"}
    y, sde = _y(), OUVESDE()
    score = guided_score(TinyScoreNet(), y, None, None)
    with pytest.raises(ValueError, match="no option.*snr.*order"):
        sample(score, "score", sde, y, "dpm", N=2, snr=0.5)
    with pytest.raises(ValueError, match=r"sampler 'ode' has no option\(s\) \['snr'\]; its options: N, rho\.$"):
        sample(score, "score", sde, y, "ode", N=2, snr=0.5)  # a sampler without options of its own
    with pytest.raises(ValueError, match="not defined for sde=sb.*dpm"):
        sample(score, "data", SBVESDE(), y, "pc", N=2)
    with pytest.raises(ValueError, match="ode.*pc"):
        get_sampler("euler")


def test_pc_sampler_with_true_score_recovers_the_clean_signal():
    # For data concentrated at x0 the exact score is known in closed form; the sampler must land near x0.
    sde = OUVESDE()
    y = _y(1, 4, 8)
    x0 = y * 0.2

    def true_score(x, t):
        std = sde.std(t).view(-1, 1, 1, 1)
        return -(x - sde.mean(x0, y, t)) / std**2

    x, _ = sample(true_score, "score", sde, y, "pc", N=30, generator=torch.Generator().manual_seed(0))
    assert (x - x0).abs().mean() < 0.05 * y.abs().mean()


class GaussianToy:
    """Clean data x0 ~ N(mu0, s0²) (complex, per element): every marginal is Gaussian, the true score and
    denoiser are closed-form, and the probability-flow ODE moves x_t0 to m_t + sqrt(v_t / v_t0)(x_t0 − m_t0)."""

    def __init__(self, sde, s0=0.1, shape=(1, 1, 16, 32)):
        g = torch.Generator().manual_seed(0)
        self.sde, self.s0 = sde, s0
        self.y = torch.randn(shape, dtype=torch.complex128, generator=g)
        self.mu0 = 0.3 * self.y + 0.2
        self.z = torch.randn(shape, dtype=torch.complex128, generator=g)

    def _a(self, t):
        return self.sde.alpha(t).view(-1, 1, 1, 1)

    def m(self, t):
        return self.sde.mean(self.mu0, self.y, t)

    def v(self, t):
        return self._a(t) ** 2 * self.s0**2 + self.sde.std(t).view(-1, 1, 1, 1) ** 2

    def score(self, x, t):
        return -(x - self.m(t)) / self.v(t)

    def denoiser(self, x, t):
        return self.mu0 + self._a(t) * self.s0**2 / self.v(t) * (x - self.m(t))

    def ode_error(self, name, N, t0=1.0, t1=0.03, **options):
        """Relative error of sampler `name` with N linear steps from t0 to t1 against the exact flow."""
        a, b = torch.tensor([t0], dtype=torch.float64), torch.tensor([t1], dtype=torch.float64)
        x_start = self.m(a) + self.v(a).sqrt() * self.z
        exact = self.m(b) + (self.v(b) / self.v(a)).sqrt() * (x_start - self.m(a))
        sampler = SAMPLERS[name]
        fn = self.score if sampler.takes == "score" else self.denoiser
        x, _ = sampler.fn(fn, self.sde, self.y, torch.linspace(t0, t1, N + 1, dtype=torch.float64),
                          x=x_start, **options)
        return ((x - exact).abs().mean() / (exact - self.mu0).abs().mean()).item()


def test_ode_sampler_with_the_true_score_converges_to_the_closed_form_flow():
    toy = GaussianToy(OUVESDE())
    errors = [toy.ode_error("ode", N) for N in (4, 8, 16, 32, 64)]
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.1
    assert 1.8 < errors[-2] / errors[-1] < 2.2  # Euler: first order


@pytest.mark.parametrize("name,options", [("heun", {}), ("dpm", {"order": 2})])
def test_second_order_solvers_halving_the_step_quarters_the_error(name, options):
    toy = GaussianToy(OUVESDE())
    errors = [toy.ode_error(name, N, **options) for N in (16, 32, 64)]
    assert all(3.3 < a / b < 4.5 for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 3e-3
    assert toy.ode_error(name, 16, **options) < 0.25 * toy.ode_error("ode", 16)


def test_dpm_first_order_is_first_order_and_converges_on_the_bridge():
    ou, sb = GaussianToy(OUVESDE()), GaussianToy(SBVESDE())
    errors = [ou.ode_error("dpm", N, order=1) for N in (16, 32, 64)]
    assert all(1.7 < a / b < 2.3 for a, b in zip(errors, errors[1:])), errors
    # the bridge's ODE from an intermediate time (std > 0 there), first and second order
    for order, ratio in ((1, (1.7, 2.3)), (2, (3.0, 5.5))):
        e = [sb.ode_error("dpm", N, t0=0.6, order=order) for N in (16, 32, 64)]
        assert all(ratio[0] < a / b < ratio[1] for a, b in zip(e, e[1:])), (order, e)


def test_bridge_samplers_from_the_prior_reach_the_data_distribution():
    toy = GaussianToy(SBVESDE(), shape=(1, 1, 64, 64))
    y = toy.y.to(torch.complex64)
    den = lambda x, t: toy.denoiser(x.to(torch.complex128), t.double()).to(torch.complex64)
    # from x_T = y the ODE follows the posterior mean: it lands on E[x0] = mu0
    x, _ = SAMPLERS["dpm"].fn(den, toy.sde, y, get_timesteps(4, 1.0, 0.03), order=1)
    assert (x - toy.mu0).abs().max() < 1e-4
    # the stochastic sampler draws from N(mu0, s0²)
    x, _ = SAMPLERS["sb_sde"].fn(den, toy.sde, y, get_timesteps(64, 1.0, 1e-4, rho=4.0),
                                 generator=torch.Generator().manual_seed(0))
    d = (x - toy.mu0).to(torch.complex128)
    assert d.mean().abs() < 0.05 * toy.s0
    assert abs(d.abs().pow(2).mean().item() / toy.s0**2 - 1) < 0.15


def test_dpm_first_order_is_sgmse_schroedinger_bridge_ode_step():
    # SGMSE+'s SB ODE update (sampling/__init__.py, alpha = 1), written out independently without its
    # "+ eps" guards: at T its weights are ~1/sqrt(eps) and the guards do not cancel, which moves SGMSE+'s
    # first step by ~3 % of y whatever eps is. Our sampler steps u = x − y, where nothing cancels.
    sde, y = SBVESDE(eps=1e-14), _y(dtype=torch.complex64)
    data = lambda x, t: 0.3 * x + 0.1 * y
    ts = get_timesteps(6, 1.0, 0.03)
    ours, _ = SAMPLERS["dpm"].fn(data, sde, y, ts, order=1)
    s2 = sde.sigma2(ts.double())
    sT2 = s2[0]
    sig, sbar = s2.sqrt(), (sT2 - s2 + sde.eps).sqrt()
    x, y = y.to(torch.complex128), y.to(torch.complex128)  # its weights reach 1e7 at T: cancel in float64
    for i in range(len(ts) - 1):
        p, n = i, i + 1
        est = data(x, ts[p].expand(2))
        w_prev = sig[n] * sbar[n] / (sig[p] * sbar[p])
        w_est = (sbar[n] ** 2 - sbar[p] * sig[n] * sbar[n] / sig[p]) / sT2
        w_y = (sig[n] ** 2 - sig[p] * sig[n] * sbar[n] / sbar[p]) / sT2
        x = w_prev * x + w_est * est + w_y * y
    assert torch.allclose(ours, x.to(torch.complex64), atol=1e-5)


def test_score_and_data_predictions_convert_both_ways():
    sde, y, x = OUVESDE(), _y(), _y() * 0.5 + 0.1
    t = torch.full((2,), 0.4)
    x0 = y * 0.3
    s = sde.score_from_data(x0, x, y, t)
    assert torch.allclose(sde.data_from_score(s, x, y, t), x0, atol=1e-5)
    back = as_prediction(lambda x_, t_: s, "score", "data", sde, y)(x, t)
    assert torch.allclose(back, x0, atol=1e-5)


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
