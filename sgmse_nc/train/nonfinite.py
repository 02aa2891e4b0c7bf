"""A non-finite loss or gradient never reaches the weights, the EMA or a checkpoint.

`NonFiniteGuard` (a callback, conf/callbacks/default.yaml `nonfinite`) checks each optimizer step after the
backward pass: a NaN/Inf loss or gradient drops the step's gradients, so the optimizer moves nothing and the
model skips its EMA update (ScoreModel.step_skipped). Every rank takes the same decision (the flag is summed
over DDP ranks). Under 16-mixed the gradient scaler finds the same non-finite gradients and skips the step
itself while lowering its scale: that skip is counted here, not fought. Each skip is logged with the file ids
of the step's batches (`train_nonfinite_skips`); after `max_consecutive_skips` skips in a row the run stops
with one line naming those files and the likely causes (the checkpoints keep the last finite state).

What it costs per step (bench/nonfinite_cost.py): one fused reduction over the gradients (`grads_finite`:
torch._foreach_norm, one multi-tensor kernel on a GPU, a read of each gradient on a CPU) and one read of a 0-d
flag on the host, which decides the step. A generic optimizer (Adam here) can only be skipped by the host, so
that read is the floor, the same one torch's GradScaler takes per step; under DDP the flag is all-reduced on the
device before it. The exact per-tensor check of every weight and EMA tensor runs only when a checkpoint is
written: `nonfinite_tensors`, called by sgmse_nc.train.checkpoint_io.
"""
from __future__ import annotations

import logging

import pytorch_lightning as pl
import torch

from sgmse_nc.errors import OptionError, UserError

log = logging.getLogger(__name__)


class NonFiniteTraining(UserError):
    """Training stopped: too many optimizer steps in a row had a non-finite loss or gradient."""


def grads_finite(grads) -> torch.Tensor:
    """A 0-d bool tensor (no host sync): every gradient is finite, from one fused 2-norm per tensor in float32
    (float16/bfloat16 gradients cannot overflow it). NaN and Inf always show. A finite gradient whose squared
    norm passes float32's range (elements near 1e16 and above) counts as non-finite too: Adam squares it into its
    second moment, where it would turn into Inf; no converging run has such a gradient. ~10x cheaper on a CPU
    than the max-abs norm of `all_finite` (bench/nonfinite_cost.py)."""
    grads = [g.detach() for g in grads if g is not None]
    if not grads:
        return torch.tensor(True)
    return torch.isfinite(torch.stack(torch._foreach_norm(grads, 2, dtype=torch.float32))).all()


def all_finite(tensors) -> torch.Tensor:
    """A 0-d bool tensor (no host sync): every element of every tensor is finite. The max-abs norm is exact here:
    it is finite for any finite input (no overflow, unlike the 2-norm), NaN or Inf otherwise; for checkpoints,
    where a false report would refuse a good file."""
    tensors = [t.detach() for t in tensors if t is not None]
    if not tensors:
        return torch.tensor(True)
    return torch.isfinite(torch.nn.utils.get_total_norm(tensors, norm_type=float("inf")))


def nonfinite_tensors(named: dict) -> list[str]:
    """Names of the floating-point tensors of `named` (nested dicts allowed) that hold NaN or Inf."""
    flat = {}

    def walk(prefix, node):
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}{key}.", value)
        elif torch.is_tensor(node) and node.is_floating_point():
            flat[prefix[:-1]] = node

    walk("", named)
    if bool(all_finite(list(flat.values()))):
        return []
    return [name for name, t in flat.items() if not bool(torch.isfinite(t).all())]


class NonFiniteGuard(pl.Callback):
    def __init__(self, max_consecutive_skips: int = 20):
        if isinstance(max_consecutive_skips, bool) or not isinstance(max_consecutive_skips, int) \
                or max_consecutive_skips < 1:
            raise OptionError(f"callbacks.nonfinite.max_consecutive_skips={max_consecutive_skips}: must be an "
                              f"integer, at least 1.")
        self.max_consecutive_skips = max_consecutive_skips
        self.skipped = 0          # steps skipped in this run (kept in the checkpoint)
        self.consecutive = 0      # ... in a row, up to now
        self._loss_finite = None  # of the step's micro-batches (a tensor: no host sync per batch)
        self._ids: list[str] = []           # file ids of the step's batches
        self._streak_ids: list[str] = []    # ... of every step of the current run of skips

    def state_dict(self) -> dict:
        return {"skipped": self.skipped}

    def load_state_dict(self, state: dict) -> None:
        self.skipped = int(state.get("skipped", 0))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        ids = batch.get("id") if isinstance(batch, dict) else None
        self._ids += [str(i) for i in ids] if isinstance(ids, (list, tuple)) else []

    def on_before_backward(self, trainer, pl_module, loss):
        finite = torch.isfinite(loss.detach()).all()
        self._loss_finite = finite if self._loss_finite is None else self._loss_finite & finite

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        params = [p for group in optimizer.param_groups for p in group["params"]]
        finite = grads_finite([p.grad for p in params])
        if self._loss_finite is not None:
            finite = finite.to(self._loss_finite.device) & self._loss_finite
        bad = trainer.strategy.reduce((~finite).float().to(pl_module.device), reduce_op="sum")  # same on every rank
        ids, self._ids, self._loss_finite = self._ids, [], None
        if float(bad) == 0:  # the step's one host read
            self.consecutive, self._streak_ids = 0, []
            pl_module.log("train_nonfinite_skips", float(self.skipped), on_step=True, on_epoch=False)
            return
        optimizer.zero_grad(set_to_none=True)  # no gradient: the optimizer (or the scaler) moves no weight
        pl_module.step_skipped = True           # and the model skips its EMA update
        self.skipped += 1
        self.consecutive += 1
        self._streak_ids += ids
        pl_module.log("train_nonfinite_skips", float(self.skipped), on_step=True, on_epoch=False)
        log.warning("step %d: non-finite loss or gradient on %d rank(s); optimizer step skipped (%d in a row, %d "
                    "in this run); this rank's files: %s", trainer.global_step, int(bad), self.consecutive,
                    self.skipped, ", ".join(ids) or "(no file ids in the batch)")
        if self.consecutive >= self.max_consecutive_skips:
            raise NonFiniteTraining(self.stop_message(trainer, pl_module))

    def stop_message(self, trainer, pl_module) -> str:
        files = sorted(set(self._streak_ids))
        shown = ", ".join(files[:10]) + (f" (+{len(files) - 10} more)" if len(files) > 10 else "")
        causes = [f"a learning rate too high (model.lr={getattr(pl_module, 'lr', '?')})",
                  "a corrupt or silent file among those listed"]
        if "16" in str(trainer.precision) and "bf16" not in str(trainer.precision):
            causes.insert(1, f"a float16 overflow (trainer.precision={trainer.precision}; try bf16-mixed or 32)")
        return (f"training stopped at step {trainer.global_step}: {self.consecutive} optimizer steps in a row had a "
                f"non-finite loss or gradient and were skipped (callbacks.nonfinite.max_consecutive_skips="
                f"{self.max_consecutive_skips}); the weights, the EMA and the checkpoints hold the last finite state. "
                f"Files of those batches (this rank): {shown or 'none recorded'}. Likely causes: "
                f"{', '.join(causes[:-1])} or {causes[-1]}. Fix it and rerun the same command: it resumes from "
                f"checkpoints/last.ckpt.")
