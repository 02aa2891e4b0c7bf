"""Reverse-time samplers as small pure functions (k-diffusion style), and classifier-free guidance.

Every sampler has the signature

    sampler(model_fn, sde, y, timesteps, *, <its own options>, x=None, generator=None, callback=None)
        -> (x0 estimate, number of network evaluations)

- `model_fn(x, t) -> tensor` is the network read as a score (samplers registered with takes="score") or as
  a clean-speech estimate x̂0 (takes="data"). It closes over everything else (network, noisy spectrogram y,
  condition, guidance), so guidance and samplers compose; `as_prediction` converts between the two.
- `timesteps` is a decreasing 1-D tensor from T to (usually) 0, e.g. `get_timesteps(N, ...)`: one step per
  pair of neighbours. The schedule is the caller's choice, not the sampler's.
- Drift, diffusion, the perturbation kernel and the prior come from the SDE object (sde.py).
- `x` is the start state (default: a draw from the SDE's prior); `callback(info)` is called after every
  step with {"i", "t", "x", "denoised" (x̂0, data samplers) or "x_mean" (PC)}.

The condition is encoded once by the caller, never inside the loop; per-step schedule values are computed
once on the device before the loop, and no loop step waits for the host.
"""
from __future__ import annotations


import inspect
from dataclasses import dataclass
from typing import Callable

import torch

from sgmse_nc.condition import cat_conditions
from sgmse_nc.errors import OptionError
from sgmse_nc.diffusion.sde import GaussianSDE, randn_like

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Callback = Callable[[dict], None]


def guided_score(net: Callable, y: torch.Tensor, cond, null_cond, scale: float = 1.0) -> ModelFn:
    """Classifier-free guidance: s = s_u + w (s_c − s_u).

    w = 1 (or no condition) evaluates only the conditional score; w ≠ 1 evaluates the conditional and the
    unconditional score in one batched forward pass. cond / null_cond: sgmse_nc.condition.Condition or tensors.
    """
    if cond is None or scale == 1.0:
        return lambda x, t: net(x, y, t, cond)
    y2, c2 = torch.cat([y, y]), cat_conditions([cond, null_cond])

    def score(x, t):
        s_c, s_u = net(torch.cat([x, x]), y2, torch.cat([t, t]), c2).chunk(2)
        return s_u + scale * (s_c - s_u)
    return score


# ---- schedule --------------------------------------------------------------------------------------------
def get_timesteps(N: int, t_max: float = 1.0, t_min: float = 0.03, rho: float = 1.0, device=None) -> torch.Tensor:
    """N times from t_max down to t_min, uniform in t^(1/rho), then 0 (N + 1 values).

    rho = 1 is SGMSE+'s linear schedule; rho > 1 puts more steps at small t. The last step, t_min → 0, is
    SGMSE+'s final denoising step (the network is never evaluated at t = 0).
    """
    if N < 1:
        raise OptionError(f"the number of sampler steps N must be at least 1, got {N}")
    if not 0 < t_min <= t_max:
        raise OptionError(f"the schedule needs 0 < t_min <= t_max, got t_min={t_min}, t_max={t_max}")
    ramp = torch.linspace(0, 1, N, dtype=torch.float64)
    ts = (t_max ** (1 / rho) + ramp * (t_min ** (1 / rho) - t_max ** (1 / rho))) ** rho
    return torch.cat([ts, ts.new_zeros(1)]).to(device=device, dtype=torch.float32)


# ---- registry --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sampler:
    fn: Callable
    takes: str                      # "score" or "data": how it reads the network
    default_N: int                  # steps when neither the checkpoint nor the user says
    sdes: tuple[str, ...] | None    # the SDEs it is defined for (None: every SDE in sde.py)
    schedule: Callable | None = None  # (N, sde, rho, device) -> its own time grid (None: get_timesteps)

    @property
    def options(self) -> list[str]:
        """Options a config or the command line may set (beyond N and the schedule's rho)."""
        return [p for p in list(inspect.signature(self.fn).parameters)[4:] if p not in RUN_ARGUMENTS]


RUN_ARGUMENTS = ("x", "generator", "callback")  # every sampler's per-call arguments, not settings


SAMPLERS: dict[str, Sampler] = {}


def register(name: str, takes: str, default_N: int, sdes: tuple[str, ...] | None = None, schedule=None):
    def add(fn):
        SAMPLERS[name] = Sampler(fn, takes, default_N, sdes, schedule)
        return fn
    return add


def get_sampler(name: str) -> Sampler:
    if name not in SAMPLERS:
        raise OptionError(f"unknown sampler '{name}'; choose one of {sorted(SAMPLERS)} (conf/sampler/).")
    return SAMPLERS[name]


def as_prediction(model_fn: ModelFn, produces: str, takes: str, sde: GaussianSDE, y: torch.Tensor) -> ModelFn:
    """The network output (`produces`: "score" or "data") read as what a sampler `takes`."""
    if produces == takes:
        return model_fn
    if takes == "data":
        return lambda x, t: sde.data_from_score(model_fn(x, t), x, y, t)
    return lambda x, t: sde.score_from_data(model_fn(x, t), x, y, t)


def sampler_settings(saved: dict | None, **overrides) -> dict:
    """The sampler settings to run: the checkpoint's (`saved`), updated by the user's non-None overrides.

    Choosing another sampler than the saved one starts from that sampler's own defaults, so PC's snr never
    leaks into a sampler that has no snr.
    """
    saved = dict(saved or {"name": "pc"})
    given = {k: v for k, v in overrides.items() if v is not None}
    if given.get("name", saved["name"]) != saved["name"]:
        saved = {}
    return {**saved, **given}


def check_sampler(sde: GaussianSDE, name: str, N: int | None = None, rho: float = 1.0, **options) -> Sampler:
    """The sampler `name`, after refusing options it does not have and an SDE it is not defined for."""
    sampler = get_sampler(name)
    if sampler.sdes is not None and sde.name not in sampler.sdes:
        usable = sorted(n for n, s in SAMPLERS.items() if s.sdes is None or sde.name in s.sdes)
        raise OptionError(f"sampler '{name}' is not defined for sde={sde.name}; use one of {usable} "
                         f"(sde=sb: sampler=sb, conf/sampler/sb.yaml).")
    unknown = set(options) - set(sampler.options) - set(RUN_ARGUMENTS)
    if unknown:
        raise OptionError(f"sampler '{name}' has no option(s) {sorted(unknown)}; its options: "
                         f"{', '.join(['N', 'rho', *sampler.options])}.")
    return sampler


def sample(model_fn: ModelFn, produces: str, sde: GaussianSDE, y: torch.Tensor, name: str, N: int | None = None,
           rho: float = 1.0, **options):
    """Run sampler `name` with N steps of `get_timesteps` on the SDE's time range; returns (x0, evaluations).

    Unknown options and samplers not defined for this SDE are refused with the valid choices.
    """
    sampler = check_sampler(sde, name, **options)
    schedule = sampler.schedule or (lambda n, sde, rho, device: get_timesteps(n, sde.T, sde.t_eps, rho, device))
    ts = schedule(N or sampler.default_N, sde, rho, y.device)
    return sampler.fn(as_prediction(model_fn, produces, sampler.takes, sde, y), sde, y, ts, **options)


def _report(callback: Callback | None, **info):
    if callback is not None:
        callback(info)


# ---- score samplers: the reverse SDE and the probability-flow ODE --------------------------------------
@register("pc", takes="score", default_N=30, sdes=("ouve",))
@torch.no_grad()
def pc_sampler(score_fn: ModelFn, sde: GaussianSDE, y: torch.Tensor, timesteps: torch.Tensor, snr: float = 0.5,
               corrector_steps: int = 1, denoise: bool = True, x: torch.Tensor | None = None,
               generator: torch.Generator | None = None, callback: Callback | None = None):
    """Predictor–corrector (SGMSE+): annealed Langevin corrector, then the reverse-diffusion predictor
    x ← x − [f(x, t) − g² s] dt + g √dt z. `denoise` returns the last predictor mean (no final noise)."""
    B, N = y.shape[0], len(timesteps) - 1
    ts, dts = timesteps[:-1], timesteps[:-1] - timesteps[1:]
    gs, stds = sde.diffusion(ts), sde.std(ts)
    x = sde.prior_sampling(y, generator) if x is None else x
    x_mean = x
    for i in range(N):
        t = ts[i].expand(B)
        for _ in range(corrector_steps):  # annealed Langevin dynamics
            step = 2 * (snr * stds[i]) ** 2
            x_mean = x + step * score_fn(x, t)
            x = x_mean + torch.sqrt(2 * step) * randn_like(x, generator)
        x_mean = x - (sde.drift(x, y, t) - gs[i] ** 2 * score_fn(x, t)) * dts[i]
        x = x_mean + gs[i] * torch.sqrt(dts[i]) * randn_like(x, generator)
        _report(callback, i=i, t=ts[i], x=x, x_mean=x_mean)
    return (x_mean if denoise else x), N * (corrector_steps + 1)


def _ode_velocity(score_fn: ModelFn, sde: GaussianSDE, x, y, t, g):
    """dx/dt of the probability-flow ODE: f(x, t) − ½ g(t)² s(x, t)."""
    return sde.drift(x, y, t) - 0.5 * g ** 2 * score_fn(x, t)


@register("ode", takes="score", default_N=30, sdes=("ouve",))
@torch.no_grad()
def ode_sampler(score_fn: ModelFn, sde: GaussianSDE, y: torch.Tensor, timesteps: torch.Tensor,
                x: torch.Tensor | None = None, generator: torch.Generator | None = None,
                callback: Callback | None = None):
    """Probability-flow ODE, Euler steps (first order; one evaluation per step)."""
    B, N = y.shape[0], len(timesteps) - 1
    gs = sde.diffusion(timesteps)
    x = sde.prior_sampling(y, generator) if x is None else x
    for i in range(N):
        t = timesteps[i].expand(B)
        x = x - _ode_velocity(score_fn, sde, x, y, t, gs[i]) * (timesteps[i] - timesteps[i + 1])
        _report(callback, i=i, t=timesteps[i], x=x)
    return x, N


@register("heun", takes="score", default_N=5, sdes=("ouve",))
@torch.no_grad()
def heun_sampler(score_fn: ModelFn, sde: GaussianSDE, y: torch.Tensor, timesteps: torch.Tensor,
                 x: torch.Tensor | None = None, generator: torch.Generator | None = None,
                 callback: Callback | None = None):
    """Probability-flow ODE, Heun steps (second order, two evaluations per step). A last step to t = 0 is an
    Euler step, since the network is not evaluated at t = 0: 2N − 1 evaluations on get_timesteps."""
    B, N = y.shape[0], len(timesteps) - 1
    gs = sde.diffusion(timesteps)
    ends_at_zero = bool(timesteps[-1] == 0)  # read once, before the loop
    x = sde.prior_sampling(y, generator) if x is None else x
    for i in range(N):
        dt = timesteps[i] - timesteps[i + 1]
        v = _ode_velocity(score_fn, sde, x, y, timesteps[i].expand(B), gs[i])
        x_euler = x - v * dt
        if ends_at_zero and i == N - 1:
            x = x_euler
        else:
            v_next = _ode_velocity(score_fn, sde, x_euler, y, timesteps[i + 1].expand(B), gs[i + 1])
            x = x - 0.5 * (v + v_next) * dt
        _report(callback, i=i, t=timesteps[i], x=x)
    return x, 2 * N - int(ends_at_zero)


# ---- data-prediction samplers ----------------------------------------------------------------------------
@register("dpm", takes="data", default_N=5)
@torch.no_grad()
def dpm_sampler(data_fn: ModelFn, sde: GaussianSDE, y: torch.Tensor, timesteps: torch.Tensor, order: int = 2,
                x: torch.Tensor | None = None, generator: torch.Generator | None = None,
                callback: Callback | None = None):
    """DPM-Solver++ (Lu et al. 2022) on the probability-flow ODE, in data prediction.

    For both SDEs u = x − y has the kernel N(α_t u0, std_t²), the form DPM-Solver++ is written for. With
    λ = log(α/std) and h = λ_s − λ_t, a step from t to s is

        u_s = (std_s / std_t) u_t + α_s (1 − e^{−h}) (D − y),

    with D = x̂0 (order 1: DDIM; on sde=sb the first-order Schrödinger-bridge ODE step, evaluated at the step's
    start where SGMSE+'s `sb_ode` evaluates at its end) or, for order 2,
    the multistep extrapolation (1 + 1/2r) x̂0 − (1/2r) x̂0_prev, r = h_prev / h. Steps that end at std = 0
    (t = 0) return x̂0 itself. One evaluation per step.
    """
    if order not in (1, 2):
        raise OptionError(f"dpm sampler: order must be 1 or 2, got {order}")
    B, N = y.shape[0], len(timesteps) - 1
    t64 = timesteps.double()
    alpha, std = sde.alpha(t64), sde.std(t64)
    lam = torch.log(alpha) - torch.log(std)           # +inf where std = 0
    h = lam[1:] - lam[:-1]
    keep = (std[1:] / std[:-1]).nan_to_num(0.0)       # std_s / std_t (0 at the final t = 0)
    gain = alpha[1:] * -torch.expm1(-h)               # α_s (1 − e^{−h}); α_0 at t = 0
    second = [order == 2 and i > 0 and s > 0 for i, s in enumerate(std[1:].tolist())]
    r = torch.cat([h.new_ones(1), h[:-1] / h[1:]])    # h_prev / h, used where `second`
    r = torch.where(torch.tensor(second, dtype=torch.bool), r, torch.ones_like(r))
    new, old = 1 + 0.5 / r, -0.5 / r
    keep, gain, new, old = (c.to(device=y.device, dtype=torch.float32) for c in (keep, gain, new, old))
    x = sde.prior_sampling(y, generator) if x is None else x
    x0_prev = None
    for i in range(N):
        x0 = data_fn(x, timesteps[i].expand(B))
        d = new[i] * x0 + old[i] * x0_prev if second[i] else x0
        x = y + keep[i] * (x - y) + gain[i] * (d - y)
        x0_prev = x0
        _report(callback, i=i, t=timesteps[i], x=x, denoised=x0)
    return x, N


@register("sb_sde", takes="data", default_N=20, sdes=("sb",))
@torch.no_grad()
def sb_sde_sampler(data_fn: ModelFn, sde: GaussianSDE, y: torch.Tensor, timesteps: torch.Tensor,
                   x: torch.Tensor | None = None, generator: torch.Generator | None = None,
                   callback: Callback | None = None):
    """SGMSE+'s stochastic Schrödinger-bridge sampler: from t to s, draw from the reference process's
    posterior given x̂0, N(ρ x_t + (1 − ρ) x̂0, σ_s² (1 − ρ)) with ρ = σ_s² / σ_t²; no noise on the last step."""
    B, N = y.shape[0], len(timesteps) - 1
    s2 = sde.sigma2(timesteps.double())
    rho = s2[1:] / (s2[:-1] + sde.eps)
    noise = (s2[1:] * (1 - rho)).clamp_min(0).sqrt()
    noise[-1] = 0.0
    rho, noise = rho.to(device=y.device, dtype=torch.float32), noise.to(device=y.device, dtype=torch.float32)
    x = sde.prior_sampling(y, generator) if x is None else x
    for i in range(N):
        x0 = data_fn(x, timesteps[i].expand(B))
        x = rho[i] * x + (1 - rho[i]) * x0 + noise[i] * randn_like(x, generator)
        _report(callback, i=i, t=timesteps[i], x=x, denoised=x0)
    return x, N


SB_ODE_T_MIN = 1e-4  # sp-uhh/sgmse's get_sb_sampler(eps=1e-4): its enhancement never passes another


def sb_ode_timesteps(N: int, sde: GaussianSDE, rho: float = 1.0, device=None) -> torch.Tensor:
    """SGMSE+'s SB grid: N + 1 times evenly from T down to 1e-4 (rho is not defined for it)."""
    if rho != 1.0:
        raise OptionError("sampler 'sb_ode' runs SGMSE+'s linear grid; rho must be 1")
    if N < 1:
        raise OptionError(f"the number of sampler steps N must be at least 1, got {N}")
    return torch.linspace(sde.T, SB_ODE_T_MIN, N + 1, device=device)


def _sb_sigmas(sde: GaussianSDE, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """σ_t, σ_T and σ̄_t = sqrt(σ_T² − σ_t² + eps) in float32 by the reference's own expressions (σ_T from the
    number T, σ_t from the time tensor): its first step divides by σ̄_T ≈ sqrt(eps), where their rounding shows."""
    log_k = 2 * torch.log(torch.tensor(sde.k))
    sigma_t = torch.sqrt((sde.c * (sde.k ** (2 * t) - 1.0)) / log_k)
    sigma_T = torch.sqrt((sde.c * (sde.k ** (2 * sde.T) - 1.0)) / log_k)
    return sigma_t, sigma_T, torch.sqrt(sigma_T ** 2 - sigma_t ** 2 + sde.eps)


@register("sb_ode", takes="data", default_N=50, sdes=("sb",), schedule=sb_ode_timesteps)
@torch.no_grad()
def sb_ode_sampler(data_fn: ModelFn, sde: GaussianSDE, y: torch.Tensor, timesteps: torch.Tensor,
                   x: torch.Tensor | None = None, generator: torch.Generator | None = None,
                   callback: Callback | None = None):
    """sp-uhh/sgmse's Schrödinger-bridge ODE sampler as its published SB models were run (`sbve`, N = the
    checkpoint's, 50 by default): from x_T = y, each step to time s evaluates the network at s (the step's end,
    as the reference does) and takes x_s = a x + b x̂0 + c y with the first-order weights of Jukić et al.,
    eps guards and float32 arithmetic as there. (`sb`, DPM-Solver++ of order 1, evaluates at the step's start
    and ends at t = 0.)"""
    B, N, eps = y.shape[0], len(timesteps) - 1, sde.eps
    x = sde.prior_sampling(y, generator) if x is None else x
    sig_prev, sig_T, bar_prev = _sb_sigmas(sde, timesteps[0].expand(B).float())
    for i in range(N):
        t = timesteps[i + 1].expand(B).float()
        sig_t, _, bar_t = _sb_sigmas(sde, t)
        x0 = data_fn(x, t)
        w_prev = sig_t * bar_t / (sig_prev * bar_prev + eps)
        w_est = 1 / (sig_T ** 2 + eps) * (bar_t ** 2 - bar_prev * sig_t * bar_t / (sig_prev + eps))
        w_y = 1 / (sig_T ** 2 + eps) * (sig_t ** 2 - sig_prev * sig_t * bar_t / (bar_prev + eps))
        w_prev, w_est, w_y = (w[:, None, None, None].to(y.device) for w in (w_prev, w_est, w_y))
        x = w_prev * x + w_est * x0 + w_y * y
        sig_prev, bar_prev = sig_t, bar_t
        _report(callback, i=i, t=timesteps[i + 1], x=x, denoised=x0)
    return x, N
