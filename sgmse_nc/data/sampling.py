"""Which training example comes when, and what each one draws, as a function of the run seed only.

The training loader's sampler (`EpochShuffle`) orders the examples of an epoch from the stream
(seed, "order", epoch) and hands each position an index that carries its own seed, (seed, "example",
epoch, position). A dataset turns that seed into one generator per kind of draw (`example_draws`): the
speech crop, the noise (file, stretch, reference), the SNR, the augmentation. So two runs with the same seed
see the same examples in the same order whatever else they draw (condition dropout, an encoder's init,
DataLoader workers), and a row that adds noise augmentation still gets the same speech crops and SNRs.

Lightning calls `set_epoch` before each epoch on one device (a resumed run gets that epoch's order back);
under DDP its DistributedSamplerWrapper splits this sampler's list across ranks and the epoch counts itself.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Sampler

from sgmse_nc.seeds import stream_generator, stream_seed


class SeededIndex(int):
    """A dataset index that carries the seed of its example's random draws (pickles to DataLoader workers)."""

    def __new__(cls, index: int, seed: int):
        self = super().__new__(cls, index)
        self.seed = seed
        return self

    def __reduce__(self):
        return SeededIndex, (int(self), self.seed)


class EpochShuffle(Sampler):
    """A random order per epoch from (seed, "order", epoch); each position's index carries its example seed."""

    def __init__(self, length: int, seed: int):
        self.length, self.seed, self.epoch = int(length), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1  # where nothing calls set_epoch (under DDP's wrapper), the next pass is the next epoch
        order = torch.randperm(self.length, generator=stream_generator(self.seed, "order", epoch)).tolist()
        for position, index in enumerate(order):
            yield SeededIndex(index, stream_seed(self.seed, "example", epoch, position))


@dataclass(frozen=True)
class ExampleDraws:
    """One generator per kind of draw of a training example."""
    speech: np.random.Generator   # which stretch of the speech file (the crop)
    noise: np.random.Generator    # the noise recording, its stretch and the reference
    snr: np.random.Generator      # the mixing SNR
    augment: np.random.Generator  # the augmentation's choices


def example_draws(index: int) -> ExampleDraws:
    """The generators of the example at `index`: from its seed (a SeededIndex from EpochShuffle), else from
    torch's global generator (a plain index: a loader without EpochShuffle, a test)."""
    seed = getattr(index, "seed", None)
    if seed is None:
        seed = int(torch.randint(0, 2**62, ()).item())
    return ExampleDraws(*(np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)))


def same_draws(rng: np.random.Generator) -> ExampleDraws:
    """Every kind of draw from one generator (evaluation sets seeded per index: their examples stay as built)."""
    return ExampleDraws(rng, rng, rng, rng)
