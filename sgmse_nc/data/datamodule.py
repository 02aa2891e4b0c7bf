"""One LightningDataModule for every dataset kind: the datasets arrive built (Hydra instantiates them from
conf/data/*.yaml), this module only wraps them in loaders.

Validation has two loaders: crops of the valid set for the loss, and the first `num_eval_files` whole
utterances (batch size 1) that the model enhances to log PESQ/ESTOI/SI-SDR; test is whole utterances too.
Lightning shards the loss loader across DDP ranks; whole-utterance loaders get a sampler that never repeats
a file (Lightning's default pads ranks with duplicates), so metric sums over ranks cover each file once.
The datamodule counts what the batches say about their noise references (`reference_counts`);
`ReferenceCountsLogger` logs them once per epoch (train_ref_null, train_ref_rejected_copy, ...).
"""
from __future__ import annotations

import copy

import pytorch_lightning as pl
import torch
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, Subset

from sgmse_nc.data.sampling import EpochShuffle
from sgmse_nc.errors import OptionError


def whole_utterances(dataset: Dataset, count: int) -> Dataset:
    """The first `count` items of `dataset`, uncropped (datasets expose `num_frames`; None means whole)."""
    if not hasattr(dataset, "num_frames"):
        raise TypeError(f"{type(dataset).__name__} has no `num_frames`; it cannot serve whole utterances "
                        f"for validation metrics. Set data.num_eval_files=0.")
    full = copy.copy(dataset)
    full.num_frames = None
    return Subset(full, range(min(count, len(full))))


COUNTED = ("ref_null", "ref_rejected_overlap", "ref_rejected_copy")


class ReferenceCounts:
    """What the batches of one stage say about their references (see sgmse_nc.data.honesty): examples,
    null conditions, candidates rejected for overlapping the mixed noise and for being near-copies of it, and
    the largest accepted similarity. Counted from the batches, so the workers' counts add up."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.values = {"examples": 0, **{name: 0 for name in COUNTED}, "ref_max_xcorr": 0.0}

    def add(self, batch) -> None:
        if not isinstance(batch, dict) or "ref_null" not in batch:
            return
        self.values["examples"] += int(batch["ref_null"].numel())
        for name in COUNTED:
            self.values[name] += int(batch[name].sum())
        xcorr = batch["ref_xcorr"][~batch["ref_null"]]
        xcorr = xcorr[~torch.isnan(xcorr)]
        if xcorr.numel():
            self.values["ref_max_xcorr"] = max(self.values["ref_max_xcorr"], float(xcorr.max()))


class ReferenceCountsLogger(pl.Callback):
    """Logs the datamodule's reference counts once per epoch (summed over DDP ranks; the max for xcorr)."""

    def _log(self, trainer, pl_module, stage: str):
        counts = getattr(trainer.datamodule, "reference_counts", {}).get(stage) if trainer.datamodule else None
        if counts is None or not counts.values["examples"]:
            return
        for name, value in counts.values.items():
            pl_module.log(f"{stage}_{name}", float(value), sync_dist=True, reduce_fx="max" if "xcorr" in name
                          else "sum", rank_zero_only=False)
        counts.reset()

    def on_train_epoch_end(self, trainer, pl_module):
        self._log(trainer, pl_module, "train")

    def on_validation_epoch_end(self, trainer, pl_module):
        self._log(trainer, pl_module, "valid")


class SpeechDataModule(pl.LightningDataModule):
    def __init__(self, train: Dataset | None = None, valid: Dataset | None = None, test: Dataset | None = None,
                 batch_size: int = 8, num_workers: int = 4, num_eval_files: int = 20, pin_memory: bool | None = None,
                 persistent_workers: bool = True, seed: int = 0):
        super().__init__()
        for name, value, low in (("batch_size", batch_size, 1), ("num_workers", num_workers, 0),
                                 ("num_eval_files", num_eval_files, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise OptionError(f"data.{name}={value}: must be an integer, at least {low}.")
        self.seed = seed  # the training order and every training example's draws (sgmse_nc.data.sampling)
        self.train_set, self.valid_set, self.test_set = train, valid, test
        self.batch_size, self.num_workers, self.num_eval_files = batch_size, num_workers, num_eval_files
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.reference_counts = {"train": ReferenceCounts(), "valid": ReferenceCounts(), "test": ReferenceCounts()}

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            stage = "train" if trainer.training else "valid" if (trainer.validating or trainer.sanity_checking) \
                else "test" if trainer.testing else None
            if stage is not None and not trainer.sanity_checking:
                self.reference_counts[stage].add(batch)
        return batch

    def _loader(self, dataset: Dataset, batch_size: int, shuffle: bool, sampler=None) -> DataLoader:
        if shuffle:  # seeded order and per-example draws: runs with the same seed see the same examples
            sampler = EpochShuffle(len(dataset), self.seed)
        return DataLoader(dataset, batch_size=batch_size, num_workers=self.num_workers,
                          pin_memory=self.pin_memory, persistent_workers=self.persistent_workers,
                          drop_last=shuffle and len(dataset) >= batch_size, sampler=sampler)

    def _utterance_loader(self, dataset: Dataset) -> DataLoader:
        """Whole utterances, one per batch; under DDP each file on exactly one rank."""
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        sampler = UnrepeatedDistributedSampler(dataset, shuffle=False) if distributed else None
        return self._loader(dataset, 1, shuffle=False, sampler=sampler)

    def train_dataloader(self):
        if self.train_set is None:
            raise ValueError("the data config has no `train` dataset")
        return self._loader(self.train_set, self.batch_size, shuffle=True)

    def val_dataloader(self):
        if self.valid_set is None:
            return []
        loaders = [self._loader(self.valid_set, self.batch_size, shuffle=False)]
        if self.num_eval_files > 0:
            loaders.append(self._utterance_loader(whole_utterances(self.valid_set, self.num_eval_files)))
        return loaders

    def test_dataloader(self):
        if self.test_set is None:
            raise ValueError("the data config has no `test` dataset")
        return self._utterance_loader(whole_utterances(self.test_set, len(self.test_set)))
