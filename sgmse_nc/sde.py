"""Ornstein–Uhlenbeck variance-exploding SDE (SGMSE+):

    dx = γ (y − x) dt + g(t) dw,   g(t) = σ_min (σ_max/σ_min)^t · sqrt(2 log(σ_max/σ_min))

The perturbation kernel is Gaussian with mean e^{−γt} x0 + (1 − e^{−γt}) y and the closed-form std below.
"""
from __future__ import annotations

import math

import torch


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-example [B] values reshaped to broadcast over a [B, ...] tensor."""
    return v.reshape(-1, *([1] * (like.dim() - 1)))


class OUVESDE:
    def __init__(self, theta: float = 1.5, sigma_min: float = 0.05, sigma_max: float = 0.5, T: float = 1.0,
                 t_eps: float = 0.03):
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"OUVE needs 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.theta, self.sigma_min, self.sigma_max = theta, sigma_min, sigma_max
        self.T, self.t_eps = T, t_eps
        self.logsig = math.log(sigma_max / sigma_min)

    def sde(self, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward drift [B, ...] and diffusion g(t) [B]."""
        drift = self.theta * (y - x)
        diffusion = self.sigma_min * (self.sigma_max / self.sigma_min) ** t * math.sqrt(2 * self.logsig)
        return drift, diffusion

    def mean(self, x0: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        decay = _bcast(torch.exp(-self.theta * t), x0)
        return decay * x0 + (1 - decay) * y

    def std(self, t: torch.Tensor) -> torch.Tensor:
        s, th, ls = self.sigma_min, self.theta, self.logsig
        return torch.sqrt(s**2 * torch.exp(-2 * th * t) * (torch.exp(2 * (th + ls) * t) - 1) * ls / (th + ls))

    def marginal_prob(self, x0: torch.Tensor, y: torch.Tensor, t: torch.Tensor):
        return self.mean(x0, y, t), self.std(t)

    def prior_sampling(self, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x_T ~ N(y, std(T)^2): the mean at T is ≈ y (e^{−1.5} of x0 remains, ignored as in SGMSE+)."""
        std = self.std(torch.full((y.shape[0],), self.T, device=y.device))
        return y + _bcast(std, y) * randn_like(y, generator)

    def sample_time(self, batch: int, device, generator: torch.Generator | None = None) -> torch.Tensor:
        """Training times t ~ U(t_eps, T)."""
        return torch.rand(batch, device=device, generator=generator) * (self.T - self.t_eps) + self.t_eps

    def perturb(self, x0: torch.Tensor, y: torch.Tensor, t: torch.Tensor):
        """x_t = mean + std·z with z complex standard normal; returns (x_t, z, std)."""
        mean, std = self.marginal_prob(x0, y, t)
        z = torch.randn_like(x0)
        return mean + _bcast(std, x0) * z, z, std


def randn_like(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """torch.randn_like with an optional generator (complex tensors get unit total variance, like randn_like)."""
    if generator is None:
        return torch.randn_like(x)
    return torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)


def score_matching_loss(score: torch.Tensor, z: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """SGMSE+ denoising score matching with σ² weighting: mean_b ½ Σ |σ·s + z|² (Eq. 7 of the paper)."""
    err = _bcast(std, score) * score + z
    return 0.5 * err.abs().pow(2).reshape(err.shape[0], -1).sum(-1).mean()
