"""Reverse-time samplers as plain functions over a score callable `score_fn(x, t) -> score`.

The score callable closes over everything else (network, noisy spectrogram y, condition, guidance), so
guidance and step schedules compose (k-diffusion style). The condition is encoded once by the caller, never
inside the loop; all per-step schedule values are computed once on the device before the loop.
"""
from __future__ import annotations

from typing import Callable

import torch

from sgmse_nc.condition import cat_conditions
from sgmse_nc.sde import OUVESDE, randn_like

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def guided_score(net: Callable, y: torch.Tensor, cond, null_cond, scale: float = 1.0) -> ScoreFn:
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


def _schedule(sde: OUVESDE, y: torch.Tensor, N: int):
    """Times t_i (T → t_eps), step sizes (the last one steps from t_eps to 0, as SGMSE+), g(t_i), std(t_i)."""
    ts = torch.linspace(sde.T, sde.t_eps, N, device=y.device)
    dts = torch.cat([ts[:-1] - ts[1:], ts[-1:]])
    _, g = sde.sde(y, y, ts)
    return ts, dts, g, sde.std(ts)


@torch.no_grad()
def pc_sampler(score_fn: ScoreFn, sde: OUVESDE, y: torch.Tensor, N: int = 30, snr: float = 0.5,
               corrector_steps: int = 1, denoise: bool = True, generator: torch.Generator | None = None):
    """Predictor–corrector sampling (SGMSE+): annealed Langevin corrector, then reverse-diffusion predictor.

    Returns (x0_estimate, number of score evaluations).
    """
    B = y.shape[0]
    ts, dts, gs, stds = _schedule(sde, y, N)
    x = sde.prior_sampling(y, generator)
    x_mean = x
    for i in range(N):
        t = ts[i].expand(B)
        for _ in range(corrector_steps):  # annealed Langevin dynamics
            step = 2 * (snr * stds[i]) ** 2
            x_mean = x + step * score_fn(x, t)
            x = x_mean + torch.sqrt(2 * step) * randn_like(x, generator)
        # reverse diffusion predictor: x ← x − [γ(y − x) − g² s] dt + g √dt z
        drift = sde.theta * (y - x)
        x_mean = x - (drift - gs[i] ** 2 * score_fn(x, t)) * dts[i]
        x = x_mean + gs[i] * torch.sqrt(dts[i]) * randn_like(x, generator)
    return (x_mean if denoise else x), N * (corrector_steps + 1)


@torch.no_grad()
def ode_sampler(score_fn: ScoreFn, sde: OUVESDE, y: torch.Tensor, N: int = 30,
                generator: torch.Generator | None = None, **_):
    """Probability-flow ODE, Euler steps: dx = [γ(y − x) − ½ g² s] dt, integrated from T to 0."""
    B = y.shape[0]
    ts, dts, gs, _ = _schedule(sde, y, N)
    x = sde.prior_sampling(y, generator)
    for i in range(N):
        drift = sde.theta * (y - x) - 0.5 * gs[i] ** 2 * score_fn(x, ts[i].expand(B))
        x = x - drift * dts[i]
    return x, N


SAMPLERS = {"pc": pc_sampler, "ode": ode_sampler}


def get_sampler(name: str):
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler '{name}'; choose one of {sorted(SAMPLERS)} (conf/sampler/).")
    return SAMPLERS[name]
