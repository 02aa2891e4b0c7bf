"""Scoring of the model's enhanced validation/test utterances: PESQ / ESTOI / SI-SDR means reduced exactly
across DDP ranks (sums and counts, not a mean of per-rank means), and a few enhanced examples logged as
audio and spectrogram images (rank 0, every K validations) to wandb and TensorBoard."""
from __future__ import annotations

import math

import numpy as np
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger

from sgmse_nc.spec import decibels


def spectrogram_image(spec: torch.Tensor, floor_db: float = -80.0) -> np.ndarray:
    """An RGB image [F, T, 3] (uint8, low frequencies at the bottom) of a complex spectrogram's dB magnitude."""
    from matplotlib import colormaps

    db = decibels(spec)
    db = (db - db.max()).clamp_min(floor_db) / -floor_db + 1  # [0, 1]
    rgb = colormaps["magma"](db.flip(0).cpu().numpy())[..., :3]
    return (rgb * 255).astype(np.uint8)


class Evaluator(Callback):
    """Scores the `{"x_hat": ...}` the model returns for whole utterances (validation loader 1, test).

    metrics: names known to sgmse_nc.eval.metrics; a metric that fails on a file (NaN) is left out of its mean.
    num_examples / examples_every: log that many enhanced validation examples every K-th validation (0: never).
    """

    def __init__(self, metrics=("pesq", "estoi", "si_sdr"), num_examples: int = 2, examples_every: int = 5):
        self.metrics = tuple(metrics)
        self.num_examples, self.examples_every = num_examples, examples_every
        self.validations = 0  # completed validations (examples are logged on every `examples_every`-th)
        self._reset()

    def _reset(self):
        self.sums = torch.zeros(len(self.metrics), dtype=torch.float64)
        self.counts = torch.zeros(len(self.metrics), dtype=torch.float64)
        self.examples = []

    @staticmethod
    def sample_rate(trainer) -> int:
        """The rate of the scored files: the dataset's (which follows spec.sample_rate), else the model's."""
        dataset = getattr(trainer.datamodule, "test_set" if trainer.testing else "valid_set", None)
        return int(getattr(dataset, "sample_rate", trainer.lightning_module.sample_rate))

    def _examples_due(self, trainer) -> bool:
        return (trainer.is_global_zero and not trainer.testing and self.num_examples > 0
                and self.examples_every > 0 and self.validations % self.examples_every == 0)

    # ---- accumulate ---------------------------------------------------------------------------------------
    def _score(self, trainer, pl_module, outputs, batch):
        from sgmse_nc.eval.metrics import compute_metrics  # pesq/pystoi only where metrics are computed

        if not outputs or "x_hat" not in outputs or trainer.sanity_checking:
            return
        norm = batch["norm"].view(-1, 1)
        to_wav = pl_module.spec.to_wav
        estimate = to_wav(outputs["x_hat"].squeeze(1)) * norm
        clean = to_wav(batch["x"].squeeze(1)) * norm
        sr = self.sample_rate(trainer)
        for est, ref in zip(estimate.cpu().numpy(), clean.cpu().numpy()):
            scores = compute_metrics(est, ref, sr=sr, metrics=self.metrics)
            for i, name in enumerate(self.metrics):
                if math.isfinite(scores[name]):
                    self.sums[i] += scores[name]
                    self.counts[i] += 1
        if self._examples_due(trainer):
            noisy = to_wav(batch["y"].squeeze(1)) * norm
            for i in range(min(len(estimate), self.num_examples - len(self.examples))):
                self.examples.append({"noisy": noisy[i], "enhanced": estimate[i], "clean": clean[i],
                                      "spec": outputs["x_hat"][i, 0], "noisy_spec": batch["y"][i, 0]})

    def on_validation_epoch_start(self, trainer, pl_module):
        self._reset()

    on_test_epoch_start = on_validation_epoch_start

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if dataloader_idx == 1:
            self._score(trainer, pl_module, outputs, batch)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._score(trainer, pl_module, outputs, batch)

    # ---- reduce and log -----------------------------------------------------------------------------------
    def reduce(self, trainer, device) -> dict[str, float]:
        """Means over every rank's files: all-reduce of per-metric sums and counts."""
        totals = trainer.strategy.reduce(torch.stack([self.sums, self.counts]).to(device), reduce_op="sum")
        return {name: float(totals[0, i] / totals[1, i]) for i, name in enumerate(self.metrics) if totals[1, i] > 0}

    def _log(self, pl_module, prefix, means):
        for name, value in means.items():  # identical on every rank: no further sync
            pl_module.log(f"{prefix}_{name}", value, sync_dist=False)

    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking or not self.metrics:
            return
        self._log(pl_module, "valid", self.reduce(trainer, pl_module.device))
        if self.examples:
            self.log_examples(trainer, self.sample_rate(trainer))
        self.validations += 1

    def on_test_epoch_end(self, trainer, pl_module):
        self._log(pl_module, "test", self.reduce(trainer, pl_module.device))

    def log_examples(self, trainer, sr: int) -> None:
        step = trainer.global_step
        for logger in trainer.loggers:
            for k, ex in enumerate(self.examples):
                tag = f"valid_examples/{k}"
                images = [spectrogram_image(ex["noisy_spec"]), spectrogram_image(ex["spec"])]
                if isinstance(logger, WandbLogger):
                    names = ("noisy", "enhanced", "clean")
                    logger.log_audio(f"{tag}/audio", [ex[n].float().cpu().numpy() for n in names], step=step,
                                     sample_rate=[sr] * 3, caption=list(names))
                    logger.log_image(f"{tag}/spectrogram", images, step=step, caption=["noisy", "enhanced"])
                elif isinstance(logger, TensorBoardLogger):
                    writer = logger.experiment
                    for name in ("noisy", "enhanced", "clean"):
                        wav = ex[name].float().cpu().clamp(-1, 1).view(1, -1)
                        writer.add_audio(f"{tag}/{name}", wav, step, sample_rate=sr)
                    for name, image in zip(("noisy", "enhanced"), images):
                        writer.add_image(f"{tag}/spectrogram_{name}", image, step, dataformats="HWC")

    def state_dict(self):
        return {"validations": self.validations}

    def load_state_dict(self, state):
        self.validations = state.get("validations", 0)
