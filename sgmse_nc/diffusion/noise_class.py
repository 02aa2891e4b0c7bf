"""NASE's auxiliary task (Hu et al., "Noise-aware speech enhancement using diffusion probabilistic model",
Interspeech 2023): a small classifier predicts the noise class from the encoder's embedding of the reference,
and its cross-entropy is added to the score loss, so that the condition is specific to the noise:

    loss = score loss + weight * CE(head(E(r)), noise class)

Configured by `model.noise_class_loss` ({weight, hidden, classes}); weight 0 (the default) builds no head and
changes nothing. `classes` is the vocabulary, sorted class names, stored with the checkpoint's
hyper-parameters so that a resumed run and any later use map names to the same indices. Batches carry the
class names (`noise_class`, "" when unknown); a name outside the vocabulary is unknown too. Unknown examples,
examples without an honest reference (`ref_null`) and examples whose condition classifier-free guidance
dropped get the target -1 and add nothing to the loss; a batch with no labelled example adds exactly 0.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sgmse_nc.condition import Condition, as_condition
from sgmse_nc.errors import OptionError

UNKNOWN = -1
OPTIONS = ("weight", "hidden", "classes")


def noise_class_options(options: dict | None) -> dict:
    """The checked `model.noise_class_loss` node: weight (>= 0), hidden (>= 0), classes (unique names or None)."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise OptionError(f"model.noise_class_loss.{unknown[0]}: not an option; it takes {', '.join(OPTIONS)}.")
    weight, hidden, classes = float(options.get("weight") or 0.0), options.get("hidden") or 0, options.get("classes")
    if not (math.isfinite(weight) and weight >= 0):
        raise OptionError(f"model.noise_class_loss.weight={weight}: must be a finite number, 0 (off) or more.")
    if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 0:
        raise OptionError(f"model.noise_class_loss.hidden={hidden}: must be an integer, 0 (a linear head) or more.")
    if classes is not None:
        classes = [str(c) for c in classes]
        if len(set(classes)) != len(classes) or "" in classes:
            raise OptionError(f"model.noise_class_loss.classes={classes}: class names must be unique and non-empty.")
    return {"weight": weight, "hidden": hidden, "classes": classes}


def pooled_embedding(z) -> torch.Tensor:
    """One vector per example: the global embedding, else the mean of the real tokens."""
    z = as_condition(z)
    if z.embedding is not None:
        return z.embedding
    if z.mask is None:
        return z.tokens.mean(dim=1)
    mask = z.mask.unsqueeze(-1).to(z.tokens.dtype)
    return (z.tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)


class NoiseClassHead(nn.Module):
    """A linear classifier (hidden > 0: Linear, SiLU, Linear) from the encoder's embedding to `classes`."""

    def __init__(self, in_dim: int, classes: list[str], hidden: int = 0):
        super().__init__()
        if not classes:
            raise OptionError("model.noise_class_loss.weight > 0 needs noise classes: label the training data (a "
                              "manifest column such as noise_type or category; pools with labels: subfolder or a "
                              "csv) or list them in model.noise_class_loss.classes.")
        self.classes = list(classes)
        self.index = {name: i for i, name in enumerate(self.classes)}
        out = len(self.classes)
        self.net = nn.Linear(in_dim, out) if not hidden else nn.Sequential(
            nn.Linear(in_dim, hidden), nn.SiLU(), nn.Linear(hidden, out))

    def targets(self, names, batch: int, device=None) -> torch.Tensor:
        """Class indices of a batch's `noise_class` names; -1 where unknown ("" or not in the vocabulary, or the
        batch carries no names)."""
        names = [""] * batch if names is None else list(names)
        return torch.tensor([self.index.get(name, UNKNOWN) for name in names], dtype=torch.long, device=device)

    def forward(self, z: Condition | torch.Tensor) -> torch.Tensor:
        return self.net(pooled_embedding(z))

    def loss(self, z, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Mean cross-entropy over the labelled examples (targets >= 0; exactly 0 when there are none: every
        parameter stays in the graph, as DDP needs), and how many were labelled and classified right."""
        logits = self(z).float()
        labelled = targets >= 0
        count = labelled.sum()
        summed = F.cross_entropy(logits, targets.clamp_min(0), reduction="none").masked_fill(~labelled, 0.0).sum()
        correct = ((logits.argmax(dim=-1) == targets) & labelled).sum()
        return {"noise_class": summed / count.clamp_min(1), "labelled": count, "correct": correct}
