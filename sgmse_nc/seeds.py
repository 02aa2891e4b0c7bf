"""Named random streams, each derived from the run seed, so that runs of a study are matched.

Two rows of a study that share a seed (say an unconditional model and a CFG model) must differ only in
what the row studies. If everything drew from torch's one global generator, an extra encoder would shift
the backbone's initial weights and a condition-dropout draw would shift every later crop, SNR and noise
draw. So each kind of randomness has its own stream:

    backbone, encoder   initial weights (sgmse_nc.diffusion.model)
    order, example      which training example comes when, and each example's crop / noise / SNR draws
                        (sgmse_nc.data.sampling)
    diffusion, dropout  diffusion times and noise, CFG condition dropout (the model's training step)
    validation, test    each evaluation batch's diffusion times, noise and sampler draws, the same at every
                        validation (the model's validation/test step)

A stream's seed is a pure function of (run seed, stream name, *path), e.g. (seed, "diffusion", rank, step).
"""
from __future__ import annotations

import zlib
from contextlib import contextmanager

import numpy as np
import torch


def stream_seed(seed: int, stream: str, *path: int) -> int:
    """A 63-bit seed for the named stream at `path` (rank, epoch, position, ...), reproducible from `seed`."""
    words = [int(seed) & 0xFFFFFFFF, int(seed) >> 32 & 0xFFFFFFFF, zlib.crc32(stream.encode()), *map(int, path)]
    return int(np.random.SeedSequence(words).generate_state(2, np.uint32).view(np.uint64)[0] >> np.uint64(1))


def stream_generator(seed: int, stream: str, *path: int, device="cpu") -> torch.Generator:
    """A torch generator for the named stream (on `device`: CUDA draws need a CUDA generator)."""
    return torch.Generator(device=device).manual_seed(stream_seed(seed, stream, *path))


@contextmanager
def seeded_stream(seed: int, stream: str, *path: int):
    """Run a block (e.g. building a module) on the named stream without moving the global CPU generator:
    what the block draws depends on the stream only, and what is drawn after it does not depend on the block."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(stream_seed(seed, stream, *path))
        yield
