"""The noise condition z_r = E(r) as one small structure, and everything done to it, in one place.

A condition holds a global embedding [B, D] (enters NCSN++ through the time embedding), a token sequence
[B, L, D_tok] with an optional padding mask [B, L] (True = a real token; enters through cross-attention),
or both. Defined here, beside each other and without Lightning:

* the null condition of classifier-free guidance (zeros; a null token sequence is zero tokens, all valid);
* dropout for CFG training: a per-example `torch.where`, never a skipped encoder call (under DDP every
  parameter must take part in every step); `dropout_keep` is its draw, for losses that must know it;
* concatenation along the batch (guidance evaluates [conditional; null] in one forward pass; enhancement
  stacks the conditions of the files in a batch);
* device / dtype moves.

Plain tensors are accepted wherever a Condition is (a [B, D] tensor is a global embedding, a [B, L, D] one a
token sequence), and the functions return the type they were given, so simple encoders and test nets stay
tensor-only.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch


@dataclass(frozen=True)
class Condition:
    embedding: torch.Tensor | None = None  # global [B, D]
    tokens: torch.Tensor | None = None  # [B, L, D_tok]
    mask: torch.Tensor | None = None  # [B, L] bool, True where a token is real (None: all real)

    def __post_init__(self):
        if self.embedding is None and self.tokens is None:
            raise ValueError("a Condition needs a global embedding, tokens, or both")
        if self.embedding is not None and self.embedding.dim() != 2:
            raise ValueError(f"a global embedding is [B, D], got {tuple(self.embedding.shape)}")
        if self.tokens is not None and self.tokens.dim() != 3:
            raise ValueError(f"tokens are [B, L, D], got {tuple(self.tokens.shape)}")
        if self.mask is not None:
            if self.tokens is None or self.mask.shape != self.tokens.shape[:2] or self.mask.dtype != torch.bool:
                raise ValueError(f"a token mask is bool [B, L] matching the tokens, got {tuple(self.mask.shape)} "
                                 f"{self.mask.dtype}")
        sizes = {t.shape[0] for t in (self.embedding, self.tokens) if t is not None}
        if len(sizes) > 1:
            raise ValueError(f"global embedding and tokens disagree on the batch size: {sorted(sizes)}")

    @property
    def batch_size(self) -> int:
        return (self.embedding if self.embedding is not None else self.tokens).shape[0]

    def to(self, device=None, dtype=None) -> "Condition":
        """Move to a device; `dtype` applies to the floating fields only (the mask stays bool)."""
        move = lambda t, float_: None if t is None else t.to(device=device, dtype=dtype if float_ else None)
        return Condition(move(self.embedding, True), move(self.tokens, True), move(self.mask, False))

    def __getitem__(self, index) -> "Condition":
        """Batch slicing (keeps the batch dimension for an int index: cond[i] is a batch of one)."""
        index = slice(index, index + 1) if isinstance(index, int) else index
        return Condition(*(None if t is None else t[index] for t in (self.embedding, self.tokens, self.mask)))


def as_condition(z) -> Condition | None:
    """A Condition from what an encoder returned: None, a Condition, a [B, D] or a [B, L, D] tensor."""
    if z is None or isinstance(z, Condition):
        return z
    if z.dim() == 2:
        return Condition(embedding=z)
    if z.dim() == 3:
        return Condition(tokens=z)
    raise ValueError(f"an encoder returns [B, D] (global) or [B, L, D] (tokens), got {tuple(z.shape)}")


def zero_condition(batch: int, embed_dim: int = 0, token_dim: int = 0, num_tokens: int = 0,
                   device=None) -> Condition | None:
    """The null condition for a batch without references, from the encoder's sizes (None if it has none)."""
    if not embed_dim and not token_dim:
        return None
    emb = torch.zeros(batch, embed_dim, device=device) if embed_dim else None
    tok = torch.zeros(batch, num_tokens, token_dim, device=device) if token_dim else None
    return Condition(emb, tok)


def null_condition(z):
    """The classifier-free-guidance null condition of z, defined once: zeros (tokens: zero tokens, all valid)."""
    if isinstance(z, torch.Tensor):
        return torch.zeros_like(z)
    return Condition(None if z.embedding is None else torch.zeros_like(z.embedding),
                     None if z.tokens is None else torch.zeros_like(z.tokens),
                     None if z.mask is None else torch.ones_like(z.mask))


def select_condition(keep: torch.Tensor, z, other):
    """Per example: z where keep[b] is True, other where it is False (same type and shapes)."""
    def where(a, b):
        return torch.where(keep.view(-1, *([1] * (a.dim() - 1))), a, b)
    if isinstance(z, torch.Tensor):
        return where(z, other)
    return Condition(*(None if a is None else where(a, b) for a, b in
                       ((z.embedding, other.embedding), (z.tokens, other.tokens), (z.mask, other.mask))))


def dropout_keep(z, prob: float, generator: torch.Generator | None = None) -> torch.Tensor | None:
    """CFG dropout's draw: per example True where z is kept, with probability 1 - `prob` (None when nothing can
    be dropped: no condition, or prob <= 0)."""
    if z is None or prob <= 0:
        return None
    batch = z.shape[0] if isinstance(z, torch.Tensor) else z.batch_size
    device = (z if isinstance(z, torch.Tensor) else (z.embedding if z.embedding is not None else z.tokens)).device
    return ~(torch.rand(batch, device=device, generator=generator) < prob)


def drop_condition(z, prob: float, generator: torch.Generator | None = None):
    """Replace z by the null condition per example with probability `prob` (global and tokens together)."""
    keep = dropout_keep(z, prob, generator)
    return z if keep is None else select_condition(keep, z, null_condition(z))


def cat_conditions(conds: list):
    """Concatenate conditions along the batch (all tensors, or all Conditions with the same fields)."""
    if all(isinstance(c, torch.Tensor) for c in conds):
        return torch.cat(conds)
    present = {tuple(getattr(c, f.name) is not None for f in fields(Condition)[:2]) for c in conds}
    if len(present) != 1:
        raise ValueError("cannot concatenate conditions with different fields (global / tokens)")
    first = conds[0]
    masked = any(c.mask is not None for c in conds)
    masks = [c.mask if c.mask is not None else torch.ones(c.tokens.shape[:2], dtype=torch.bool,
                                                          device=c.tokens.device) for c in conds] if masked else None
    return replace(first,
                   embedding=None if first.embedding is None else torch.cat([c.embedding for c in conds]),
                   tokens=None if first.tokens is None else torch.cat([c.tokens for c in conds]),
                   mask=None if masks is None else torch.cat(masks))


def stack_conditions(conds: list):
    """Batch per-item conditions (each a batch of one, or None = no reference -> the null condition, whose
    guided score s_u + w (s_u - s_u) is the unconditional score at any guidance scale). None if all are None."""
    present = [c for c in conds if c is not None]
    if not present:
        return None
    null = null_condition(present[0])
    return cat_conditions([null if c is None else c for c in conds])
