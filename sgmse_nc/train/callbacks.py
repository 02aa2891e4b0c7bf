"""Training callbacks that make runs correct and resumable: per-rank seeding, last.ckpt independent of the
validation cadence (and on preemption signals), best-k checkpoints without stale files after a resume."""
from __future__ import annotations

import logging
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.utilities.exceptions import SIGTERMException

from sgmse_nc.io import remove_leftovers

log = logging.getLogger(__name__)


def rank_seed(seed: int, rank: int, step: int) -> int:
    """A seed for (run seed, global rank, global step): distinct per rank, reproducible from the run seed."""
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0])


class RankSeed(Callback):
    """Seed each DDP rank differently at the start of training (and of a resumed run).

    `seed_everything(seed)` gives every rank the same RNG, so all ranks drew the same diffusion times,
    perturbation noise, dropout masks and crops. Reseeding from (seed, rank, step) once the ranks are known
    fixes that; DataLoader workers then derive their seeds from the rank's (Lightning's worker_init_fn).
    The model's own named streams (diffusion, dropout: sgmse_nc.seeds) are seeded here from the same triple;
    the training examples draw from the data streams (sgmse_nc.data.sampling), which depend on the seed only.
    """

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_start(self, trainer, pl_module):
        shared = os.environ.get("PL_GLOBAL_SEED")
        pl.seed_everything(rank_seed(self.seed, trainer.global_rank, trainer.global_step), workers=True,
                           verbose=False)
        if shared is not None:  # what DistributedSampler shuffles with: it must stay the same on every rank
            os.environ["PL_GLOBAL_SEED"] = shared
        if hasattr(pl_module, "seed_streams"):
            pl_module.seed_streams(self.seed, trainer.global_rank, trainer.global_step)


class ProgressLog(Callback):
    """One log line every `every_seconds` of training when the output is not a terminal (nohup, SLURM, a CI
    log), where Lightning's progress bar shows nothing until the end:

        step 1200/50000  loss 0.1834  3.21 steps/s  ETA 4h13m

    `always`: log even on a terminal. Rank 0 only; the loss is the last training step's."""

    def __init__(self, every_seconds: float = 60.0, always: bool = False):
        self.every_seconds, self.always = float(every_seconds), always
        self._start = self._last = None
        self._start_step = 0

    def _on(self, trainer) -> bool:
        return trainer.is_global_zero and (self.always or not sys.stderr.isatty())

    def on_train_start(self, trainer, pl_module):
        self._start = self._last = time.monotonic()
        self._start_step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        now = time.monotonic()
        if not self._on(trainer) or now - self._last < self.every_seconds:
            return
        self._last = now
        log.info(progress_line(trainer.global_step, trainer.max_steps, _loss(outputs), trainer.global_step -
                               self._start_step, now - self._start))


def _loss(outputs) -> float | None:
    loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
    return float(loss) if loss is not None else None


def progress_line(step: int, max_steps: int, loss: float | None, steps_done: int, seconds: float) -> str:
    """`step 1200/50000  loss 0.1834  3.21 steps/s  ETA 4h13m` (no total and no ETA when max_steps is -1)."""
    rate = steps_done / seconds if seconds > 0 else 0.0
    parts = [f"step {step}" + (f"/{max_steps}" if max_steps and max_steps > 0 else "")]
    if loss is not None:
        parts.append(f"loss {loss:.4f}")
    parts.append(f"{rate:.2f} steps/s")
    if max_steps and max_steps > 0 and rate > 0:
        left = int((max_steps - step) / rate)
        parts.append(f"ETA {left // 3600}h{left % 3600 // 60:02d}m" if left >= 3600 else f"ETA {left // 60}m{left % 60:02d}s")
    return "  ".join(parts)


class LastCheckpoint(Callback):
    """checkpoints/last.ckpt, always the newest state of the run: every `every_n_steps` optimizer steps, at
    every epoch end, at the end of training, and when the run is stopped (SIGTERM, SIGUSR1 — what SLURM sends
    before preemption — or Ctrl-C). Written to a temporary file and renamed (SafeCheckpointIO), so a kill never
    leaves a torn file.
    """

    def __init__(self, dirpath, every_n_steps: int = 500):
        self.path = Path(dirpath) / "last.ckpt"
        self.every_n_steps = every_n_steps
        self.interrupted: str | None = None  # the signal's name when the run was stopped by one
        self._saved_step = -1
        self._previous_usr1 = None

    def save(self, trainer: pl.Trainer) -> None:
        if trainer.global_step == self._saved_step and self.path.is_file():
            return
        # weights_only=False: the full state (optimizer, loops, EMA) a resume needs; saying so also keeps
        # Lightning from warning "`weights_only` was not set" at every save. Every rank takes part in the
        # collective; rank 0 writes, atomically and checked for NaN/Inf (sgmse_nc.train.checkpoint_io.
        # SafeCheckpointIO, the trainer's checkpoint writer)
        trainer.save_checkpoint(self.path, weights_only=False)
        self._saved_step = trainer.global_step

    def on_train_start(self, trainer, pl_module):
        if trainer.is_global_zero:
            remove_leftovers(self.path.parent, recursive=False)  # of a save a kill interrupted
        self._saved_step = trainer.global_step if self.path.is_file() else -1
        # SIGUSR1 (SLURM's pre-preemption signal) takes Lightning's graceful SIGTERM path: children stopped,
        # ranks in step, SIGTERMException at the next step boundary, then on_exception below saves.
        if hasattr(signal, "SIGUSR1"):
            self._previous_usr1 = signal.signal(signal.SIGUSR1, self._on_sigusr1)

    def _on_sigusr1(self, signum, frame):
        self.interrupted = "SIGUSR1"
        signal.raise_signal(signal.SIGTERM)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0 and trainer.global_step > 0:
            self.save(trainer)

    def on_train_epoch_end(self, trainer, pl_module):
        self.save(trainer)

    def on_train_end(self, trainer, pl_module):
        self.save(trainer)
        self._restore_signal()

    def on_exception(self, trainer, pl_module, exception):
        if isinstance(exception, (SIGTERMException, KeyboardInterrupt)):
            self.interrupted = self.interrupted or ("SIGTERM" if isinstance(exception, SIGTERMException)
                                                    else "KeyboardInterrupt")
            self.save(trainer)
        self._restore_signal()

    def _restore_signal(self):
        if self._previous_usr1 is not None:
            signal.signal(signal.SIGUSR1, self._previous_usr1)
            self._previous_usr1 = None


class BestCheckpoint(ModelCheckpoint):
    """ModelCheckpoint for the best-k validation checkpoints (never `last`: LastCheckpoint owns that file).

    A resumed run restores its top-k bookkeeping from last.ckpt; a best file written after that last.ckpt
    (the run was killed in between) is unknown to it and would stay forever beside the new best. At the start
    of training such files (this callback's filename prefix, not among its kept paths) are deleted.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("enable_version_counter", False)
        super().__init__(*args, save_last=False, **kwargs)

    @property
    def prefix(self) -> str:
        return (self.filename or "").split("{", 1)[0]

    def on_train_start(self, trainer, pl_module):
        super().on_train_start(trainer, pl_module)
        if not (trainer.is_global_zero and self.prefix and self.dirpath and Path(self.dirpath).is_dir()):
            return
        kept = {Path(p).resolve() for p in self.best_k_models}
        for path in Path(self.dirpath).glob(f"{self.prefix}*{self.FILE_EXTENSION}"):
            if path.resolve() not in kept:
                log.info("removing %s: not among this run's best %d (written after its last.ckpt)", path,
                         self.save_top_k)
                path.unlink()
