"""Noise-reference strategies: where the noise-only reference `r` of an example comes from.

    same_utterance   a stretch of noisy − clean of the same utterance, outside the training crop (default)
    same_noise_type  a stretch of noisy − clean of ANOTHER utterance with the same noise label, taken
                     from the subset's manifest (`noise_type` column by default)
    file             a stretch of a given noise-only file `<ref_dir>/<id>.wav`, one per utterance

Each strategy is a callable `(index, noise, start, length, rng) -> reference [ref_len]` where `noise` is
the item's noisy − clean and [start, start + length) its crop. `rng` is the training generator
(`paired.train_rng`: random, different per worker and epoch); in evaluation it is None and the strategies
that must choose draw from `numpy.random.default_rng((seed, index))`, so valid/test are the same every run.

A noise label with a single utterance cannot give "another utterance": `same_noise_type` then falls back to
`same_utterance` for it; the utterances concerned are listed in `fallback_ids` and reported once (warning).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from sgmse_nc.audio import AUDIO_EXTENSIONS, SAMPLE_RATE, AudioError, read_audio
from sgmse_nc.data.example import crop_start, loop_to_length, stretch_outside
from sgmse_nc.data.manifest import ManifestError, read_manifest

log = logging.getLogger(__name__)

REFERENCE_STRATEGIES = ("same_utterance", "same_noise_type", "file")


def choice_rng(rng: np.random.Generator | None, seed: int, index: int) -> np.random.Generator:
    """The training generator, or in evaluation one fixed by (seed, index)."""
    return rng if rng is not None else np.random.default_rng((seed, index))


def random_stretch(wav: torch.Tensor, ref_len: int, rng: np.random.Generator) -> torch.Tensor:
    """A `ref_len` stretch at a random position; a shorter recording is looped."""
    start = crop_start(wav.shape[-1], ref_len, rng)
    return loop_to_length(wav[start:start + ref_len], ref_len)


class SameUtterance:
    """noisy − clean of the same utterance, outside the crop when it is long enough (see stretch_outside)."""

    def __init__(self, ref_len: int):
        self.ref_len = ref_len

    def __call__(self, index, noise, start, length, rng):
        return stretch_outside(noise, start, length, self.ref_len, rng)


class SameNoiseType:
    """noisy − clean of another utterance with the same noise label.

    ids: the dataset's file ids, in item order; labels come from the manifest rows with these ids.
    load_noise: index -> noisy − clean of that item.
    """

    def __init__(self, ids: list[str], manifest, load_noise: Callable[[int], torch.Tensor], ref_len: int,
                 seed: int = 0, label_column: str = "noise_type"):
        self.manifest, self.load_noise, self.ref_len, self.seed = Path(manifest), load_noise, ref_len, seed
        rows = read_manifest(self.manifest, required=("id", label_column))
        label_of_id = {row["id"]: row[label_column] for row in rows}
        missing = [utt for utt in ids if utt not in label_of_id]
        if missing:
            raise ManifestError(f"{self.manifest}: no row for {len(missing)} file(s) of the dataset "
                                f"(e.g. {', '.join(missing[:5])}). Regenerate the manifest for this folder.")
        labels = [label_of_id[utt] for utt in ids]
        self.groups = {label: np.flatnonzero(np.array(labels) == label) for label in sorted(set(labels))}
        self.label_of = labels
        # position of each item inside its group, to draw "any other member" without building per-item lists
        self.position = np.empty(len(ids), dtype=np.int64)
        for members in self.groups.values():
            self.position[members] = np.arange(len(members))
        self.fallback_ids = [ids[members[0]] for members in self.groups.values() if len(members) == 1]
        if self.fallback_ids:
            log.warning("%s: %d noise label(s) have a single utterance (%s); their reference falls back to "
                        "same_utterance.", self.manifest, len(self.fallback_ids), ", ".join(self.fallback_ids[:5]))
        self.same_utterance = SameUtterance(ref_len)

    def pick(self, index: int, rng: np.random.Generator) -> int | None:
        """Index of another item with the same label (None when the label has a single utterance)."""
        members = self.groups[self.label_of[index]]
        if len(members) < 2:
            return None
        k = int(rng.integers(len(members) - 1))
        return int(members[k + (k >= self.position[index])])  # skip the item itself

    def __call__(self, index, noise, start, length, rng):
        chooser = choice_rng(rng, self.seed, index)
        other = self.pick(index, chooser)
        if other is None:
            return self.same_utterance(index, noise, start, length, rng)
        return random_stretch(self.load_noise(other), self.ref_len, chooser)


class FromFile:
    """A stretch of the noise-only file with the item's name in `ref_dir` (looped when shorter)."""

    def __init__(self, ids: list[str], ref_dir, ref_len: int, sample_rate: int = SAMPLE_RATE, seed: int = 0):
        self.ref_dir, self.ref_len, self.sample_rate, self.seed = Path(ref_dir), ref_len, sample_rate, seed
        if not self.ref_dir.is_dir():
            raise AudioError(f"{self.ref_dir}: reference folder not found. Set `ref_dir` in the data config to a "
                             f"folder of noise-only files named like the noisy files, or use another `reference`.")
        self.paths, missing = [], []
        for utt in ids:
            path = next((p for p in (self.ref_dir / f"{utt}{ext}" for ext in AUDIO_EXTENSIONS) if p.is_file()), None)
            self.paths.append(path)
            if path is None:
                missing.append(utt)
        if missing:
            raise AudioError(f"{self.ref_dir}: no reference file for {len(missing)} utterance(s) (e.g. "
                             f"{', '.join(f'{utt}.wav' for utt in missing[:5])}). Every noisy file needs a "
                             f"noise-only file of the same name there.")

    def __call__(self, index, noise, start, length, rng):
        reference = read_audio(self.paths[index], self.sample_rate)
        return random_stretch(reference, self.ref_len, choice_rng(rng, self.seed, index))


def build_reference(name: str, ids: list[str], ref_len: int, load_noise: Callable[[int], torch.Tensor],
                    manifest=None, ref_dir=None, sample_rate: int = SAMPLE_RATE, seed: int = 0,
                    label_column: str = "noise_type"):
    """The strategy called `name` (the data config's `reference`)."""
    if name == "same_utterance":
        return SameUtterance(ref_len)
    if name == "same_noise_type":
        return SameNoiseType(ids, manifest, load_noise, ref_len, seed, label_column)
    if name == "file":
        return FromFile(ids, ref_dir, ref_len, sample_rate, seed)
    raise ValueError(f"reference: {name!r} is not a strategy; choose one of {', '.join(REFERENCE_STRATEGIES)}.")
