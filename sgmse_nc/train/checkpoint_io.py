"""How the trainer writes every checkpoint (last.ckpt, the best ones): checked, then atomic.

A checkpoint holding NaN or Inf (weights or EMA) is refused before anything is written, and the file goes
through sgmse_nc.io.atomic_path: a temporary file beside it, synced, renamed over the old one. A kill (even
SIGKILL), a full or read-only disk therefore leave the previous checkpoint whole and loadable; a full disk
stops the run with one line naming the path and the space it needs (sgmse_nc.io.DiskWriteError).
"""
from __future__ import annotations

from pathlib import Path

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from sgmse_nc.errors import UserError
from sgmse_nc.io import atomic_path
from sgmse_nc.train.nonfinite import nonfinite_tensors


class NonFiniteCheckpoint(UserError):
    """A checkpoint that would hold NaN/Inf; it was not written (the previous file is kept)."""


class SafeCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        bad = nonfinite_tensors({"state_dict": checkpoint.get("state_dict", {}), "ema": checkpoint.get("ema", {})})
        if bad:
            raise NonFiniteCheckpoint(
                f"{path}: not written, {len(bad)} tensor(s) hold NaN or Inf ({', '.join(bad[:5])}); the previous "
                f"file is kept. The run diverged: lower model.lr, use trainer.precision=bf16-mixed or 32, and "
                f"resume from the last checkpoint.")
        with atomic_path(Path(path)) as tmp:
            torch.save(checkpoint, tmp)
