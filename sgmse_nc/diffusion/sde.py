"""The forward processes between clean speech x0 and noisy speech y, and their training losses.

Both SDEs have a Gaussian perturbation kernel whose mean sits on the line from x0 to y,

    x_t ~ N(mean_t, std_t^2),   mean_t = α_t x0 + (1 − α_t) y,

so samplers need only `alpha`, `std`, `drift`, `diffusion` and `prior_sampling` (sampling.py), and a
network trained for the score can be read as a data predictor and back (`data_from_score`, `score_from_data`).

- `ouve`: SGMSE+'s Ornstein–Uhlenbeck variance-exploding SDE
      dx = γ (y − x) dt + g(t) dw,   g(t) = σ_min (σ_max/σ_min)^t · sqrt(2 log(σ_max/σ_min)),
  α_t = e^{−γt}; the prior at T is N(y, std_T^2) (the e^{−γT} x0 that remains is ignored, as in SGMSE+).
- `sb`: the Schrödinger bridge with a variance-exploding reference process (Jukić et al. 2024, SGMSE+'s
  `SBVESDE`): dx = g(t) dw, g(t) = sqrt(c) k^t, pinned to x0 at t = 0 and to y at t = T.
  With σ_t^2 = c (k^{2t} − 1) / (2 log k) and σ̄_t^2 = σ_T^2 − σ_t^2:
      mean_t = (σ̄_t^2 x0 + σ_t^2 y) / σ_T^2,   std_t = σ_t σ̄_t / σ_T,
  so the prior at T is y itself. It is trained with the data-prediction loss below.
"""
from __future__ import annotations

import math

import torch

from sgmse_nc.errors import OptionError


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-example [B] values reshaped to broadcast over a [B, ...] tensor."""
    return v.reshape(-1, *([1] * (like.dim() - 1)))


class GaussianSDE:
    """What the two SDEs share: the kernel mean on the x0–y line, perturbation, prediction conversions.

    Subclasses define `alpha(t)`, `std(t)`, `drift(x, y, t)`, `diffusion(t)`, `prior_sampling(y, generator)`
    and the attributes `name`, `T`, `t_eps` (the smallest time trained on and sampled at, before the last
    step to t = 0).
    """
    name: str
    T: float
    t_eps: float

    def sde(self, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward drift [B, ...] and diffusion g(t) [B] (SGMSE+'s `sde.sde`)."""
        return self.drift(x, y, t), self.diffusion(t)

    def mean(self, x0: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = _bcast(self.alpha(t), x0)
        return a * x0 + (1 - a) * y

    def marginal_prob(self, x0: torch.Tensor, y: torch.Tensor, t: torch.Tensor):
        return self.mean(x0, y, t), self.std(t)

    def sample_time(self, batch: int, device, generator: torch.Generator | None = None) -> torch.Tensor:
        """Training times t ~ U(t_eps, T)."""
        return torch.rand(batch, device=device, generator=generator) * (self.T - self.t_eps) + self.t_eps

    def perturb(self, x0: torch.Tensor, y: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None = None):
        """x_t = mean + std·z with z complex standard normal; returns (x_t, z, std)."""
        mean, std = self.marginal_prob(x0, y, t)
        z = randn_like(x0, generator)
        return mean + _bcast(std, x0) * z, z, std

    def score_from_data(self, x0_hat: torch.Tensor, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor):
        """The score of the kernel around a data estimate: −(x − mean(x0_hat)) / std²."""
        return (self.mean(x0_hat, y, t) - x) / _bcast(self.std(t), x) ** 2

    def data_from_score(self, score: torch.Tensor, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor):
        """The data estimate (Tweedie): mean = x + std² · score, solved for x0."""
        a = _bcast(self.alpha(t), x)
        mean = x + _bcast(self.std(t), x) ** 2 * score
        return (mean - (1 - a) * y) / a


class OUVESDE(GaussianSDE):
    name = "ouve"

    def __init__(self, theta: float = 1.5, sigma_min: float = 0.05, sigma_max: float = 0.5, T: float = 1.0,
                 t_eps: float = 0.03):
        if not 0 < sigma_min < sigma_max:
            raise OptionError(f"OUVE needs 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.theta, self.sigma_min, self.sigma_max = theta, sigma_min, sigma_max
        self.T, self.t_eps = T, t_eps
        self.logsig = math.log(sigma_max / sigma_min)

    def drift(self, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.theta * (y - x)

    def diffusion(self, t: torch.Tensor) -> torch.Tensor:
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t * math.sqrt(2 * self.logsig)

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.exp(-self.theta * t)

    def std(self, t: torch.Tensor) -> torch.Tensor:
        s, th, ls = self.sigma_min, self.theta, self.logsig
        return torch.sqrt(s**2 * torch.exp(-2 * th * t) * (torch.exp(2 * (th + ls) * t) - 1) * ls / (th + ls))

    def prior_sampling(self, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x_T ~ N(y, std(T)^2)."""
        std = self.std(torch.full((y.shape[0],), self.T, device=y.device))
        return y + _bcast(std, y) * randn_like(y, generator)


class SBVESDE(GaussianSDE):
    """Schrödinger bridge, variance-exploding (SGMSE+'s `sbve`; defaults k 2.6, c 0.4, eps 1e-8 as there)."""
    name = "sb"

    def __init__(self, k: float = 2.6, c: float = 0.4, eps: float = 1e-8, T: float = 1.0, t_eps: float = 0.03):
        if k <= 1 or c <= 0:
            raise OptionError(f"SB-VE needs k > 1 and c > 0, got k={k}, c={c}")
        self.k, self.c, self.eps, self.T, self.t_eps = k, c, eps, T, t_eps

    def sigma2(self, t):
        """σ_t² = ∫_0^t g(s)² ds of the reference process (a tensor or a float)."""
        return self.c * (self.k ** (2 * t) - 1) / (2 * math.log(self.k))

    def drift(self, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)

    def diffusion(self, t: torch.Tensor) -> torch.Tensor:
        return math.sqrt(self.c) * self.k ** t

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        s2, s2_T = self.sigma2(t), self.sigma2(self.T)
        return (s2_T - s2 + self.eps) / (s2_T + self.eps)   # σ̄_t² / σ_T² (eps as in SGMSE+)

    def std(self, t: torch.Tensor) -> torch.Tensor:
        s2, s2_T = self.sigma2(t), self.sigma2(self.T)
        return torch.sqrt(s2 * (s2_T - s2 + self.eps)) / (math.sqrt(s2_T) + self.eps)

    def prior_sampling(self, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The bridge ends at y: x_T = y."""
        return y.clone()


SDES = {cls.name: cls for cls in (OUVESDE, SBVESDE)}


def build_sde(name: str = "ouve", **params) -> GaussianSDE:
    """The SDE of a config node / checkpoint (`name` from conf/sde/; older checkpoints have none: ouve)."""
    if name not in SDES:
        raise OptionError(f"unknown sde '{name}'; choose one of {sorted(SDES)} (conf/sde/).")
    return SDES[name](**params)


def randn_like(x: torch.Tensor, generator: torch.Generator | list[torch.Generator] | None = None) -> torch.Tensor:
    """torch.randn_like with an optional generator (complex tensors get unit total variance, like randn_like).

    A list holds one generator per batch item: each item's noise then depends on its own generator only,
    not on what it is batched with (enhance.py's per-file seeds).
    """
    if generator is None:
        return torch.randn_like(x)
    if isinstance(generator, (list, tuple)):
        return torch.stack([torch.randn(x.shape[1:], dtype=x.dtype, device=x.device, generator=g)
                            for g in generator])
    return torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)


def score_matching_loss(score: torch.Tensor, z: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """SGMSE+ denoising score matching with σ² weighting: mean_b ½ Σ |σ·s + z|² (Eq. 7 of the paper)."""
    err = _bcast(std, score) * score + z
    return 0.5 * err.abs().pow(2).reshape(err.shape[0], -1).sum(-1).mean()


def data_prediction_loss(x0_hat: torch.Tensor, x0: torch.Tensor, to_wav, l1_weight: float = 1e-3) -> torch.Tensor:
    """SGMSE+'s `data_prediction` loss (the SB's): ½ mean |x̂0 − x0|² on the spectrogram plus `l1_weight` ×
    ½ mean |wav(x̂0) − wav(x0)| on the waveform (`to_wav`: [B, F, T] spectrogram -> [B, L] wav)."""
    loss = 0.5 * (x0_hat - x0).abs().pow(2).mean()
    if l1_weight:
        loss = loss + l1_weight * 0.5 * (to_wav(x0_hat.squeeze(1)) - to_wav(x0.squeeze(1))).abs().mean()
    return loss
