"""Noise-reference strategies of paired datasets: where the noise-only reference `r` of an example comes from.
Each is a config value (`reference:`) used the same way in training, validation, test sets and enhance.py:

    noise_ref_dir          a stretch of the noise-only file `<ref_dir>/<id>.wav` (what the builders, the demo
                           corpus and `prepare vbdmd` write)
    same_noise_type        a stretch of noisy − clean of ANOTHER utterance with the same noise label (manifest
                           column `noise_type` by default); deterministic for a seed in evaluation
    from_noisy_pauses      noise-only stretches of the noisy input itself, found by a voice-activity detector
                           (sgmse_nc.data.pauses): needs no clean signal and no separate noise file
    none                   the null condition (no reference)
    oracle_same_utterance  noisy − clean of the same utterance outside the crop: needs the clean signal, so
                           it exists only in the lab; for ablations, and logged as "oracle"

A strategy proposes candidates, best first (another stretch, then another recording of the class); the
reference policy (sgmse_nc.data.honesty) takes the first that neither overlaps the mixed noise nor is a
near-copy of it, and never falls back silently. `rng` is the training example's noise generator
(`sampling.example_draws`);
in evaluation it is None and choices come from `numpy.random.default_rng((seed, index))`.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from sgmse_nc.audio import AUDIO_EXTENSIONS, SAMPLE_RATE, AudioError, read_audio
from sgmse_nc.data.example import crop_start, loop_to_length
from sgmse_nc.data.honesty import Candidate
from sgmse_nc.data.manifest import ManifestError, read_manifest
from sgmse_nc.data.pauses import noisy_pause_stretches

log = logging.getLogger(__name__)

REFERENCE_STRATEGIES = ("noise_ref_dir", "same_noise_type", "from_noisy_pauses", "none", "oracle_same_utterance")
RENAMED = {"same_utterance": "oracle_same_utterance", "file": "noise_ref_dir"}
STRETCHES = 4  # stretches of one recording tried before another recording


def choice_rng(rng: np.random.Generator | None, seed: int, index: int) -> np.random.Generator:
    """The training generator, or in evaluation one fixed by (seed, index)."""
    return rng if rng is not None else np.random.default_rng((seed, index))


def random_stretch(wav: torch.Tensor, ref_len: int, rng: np.random.Generator) -> tuple[torch.Tensor, int]:
    """A `ref_len` stretch at a random position and its start; a shorter recording is looped."""
    start = crop_start(wav.shape[-1], ref_len, rng)
    return loop_to_length(wav[start:start + ref_len], ref_len), start


class OracleSameUtterance:
    """noisy − clean of the same utterance outside [start, start + length): the clean signal is needed, so
    this is an oracle. A side shorter than the reference is looped if it holds at least a quarter of it;
    a crop that covers (almost) the whole utterance has no candidate (never the mixed noise itself)."""

    def __init__(self, ref_len: int):
        self.ref_len = ref_len
        log.warning("reference: oracle_same_utterance needs the clean signal (an ORACLE reference, not available "
                    "at deployment); tables made with it must say so.")

    def __call__(self, index, noisy, clean, start, length, rng) -> Iterator[Candidate]:
        chooser = choice_rng(rng, 0, index)
        noise = noisy - clean
        sides = [(0, noise[:start]), (start + length, noise[start + length:])]
        usable = [(at, side) for at, side in sides if side.shape[-1] >= self.ref_len // 4]
        for _ in range(STRETCHES if usable else 0):
            at, side = usable[int(chooser.integers(len(usable)))]
            stretch, offset = random_stretch(side, self.ref_len, chooser)
            yield Candidate(stretch, "same utterance", str(at + offset), "oracle_same_utterance")


class SameNoiseType:
    """noisy − clean of another utterance with the same noise label, in a seeded random order.

    ids: the dataset's file ids, in item order; labels come from the manifest rows with these ids.
    load_noise: index -> noisy − clean of that item.
    """

    def __init__(self, ids: list[str], manifest, load_noise: Callable[[int], torch.Tensor], ref_len: int,
                 seed: int = 0, label_column: str = "noise_type"):
        self.ids, self.manifest, self.load_noise, self.ref_len, self.seed = ids, Path(manifest), load_noise, ref_len, seed
        rows = read_manifest(self.manifest, required=("id", label_column))
        label_of_id = {row["id"]: row[label_column] for row in rows}
        missing = [utt for utt in ids if utt not in label_of_id]
        if missing:
            raise ManifestError(f"{self.manifest}: no row for {len(missing)} file(s) of the dataset "
                                f"(e.g. {', '.join(missing[:5])}). Regenerate the manifest for this folder.")
        self.label_of = [label_of_id[utt] for utt in ids]
        labels = np.array(self.label_of)
        self.groups = {label: np.flatnonzero(labels == label) for label in sorted(set(self.label_of))}
        singles = [ids[m[0]] for m in self.groups.values() if len(m) == 1]
        if singles:
            log.warning("%s: %d noise label(s) have a single utterance (%s): they have no other utterance to take "
                        "a reference from (the reference policy decides: error or null condition).",
                        self.manifest, len(singles), ", ".join(singles[:5]))

    def others(self, index: int, rng: np.random.Generator) -> list[int]:
        """The other items with the same label, in a random order (never the item itself)."""
        members = self.groups[self.label_of[index]]
        return [int(i) for i in rng.permutation(members) if i != index]

    def __call__(self, index, noisy, clean, start, length, rng) -> Iterator[Candidate]:
        chooser = choice_rng(rng, self.seed, index)
        for other in self.others(index, chooser):
            noise = self.load_noise(other)
            for _ in range(2):  # another stretch, then another utterance
                stretch, offset = random_stretch(noise, self.ref_len, chooser)
                yield Candidate(stretch, self.ids[other], str(offset), "other_utterance_same_label")


class NoiseRefDir:
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

    def __call__(self, index, noisy, clean, start, length, rng) -> Iterator[Candidate]:
        chooser = choice_rng(rng, self.seed, index)
        reference = read_audio(self.paths[index], self.sample_rate)
        for _ in range(STRETCHES):
            stretch, offset = random_stretch(reference, self.ref_len, chooser)
            yield Candidate(stretch, self.paths[index].name, str(offset), "noise_ref_dir")


class FromNoisyPauses:
    """Stretches of the noisy signal where the VAD finds no speech. They come from the input itself, so
    they are what any user has; they are exempt from the near-copy rule (their similarity is still
    measured and reported)."""

    def __init__(self, ref_len: int, sample_rate: int = SAMPLE_RATE):
        self.ref_len, self.sample_rate = ref_len, sample_rate

    def __call__(self, index, noisy, clean, start, length, rng) -> Iterator[Candidate]:
        for stretch, offset in noisy_pause_stretches(noisy, self.sample_rate, self.ref_len):
            yield Candidate(stretch, "noisy input", str(offset), "from_noisy_pauses", exempt=True)


class NoReference:
    def __call__(self, index, noisy, clean, start, length, rng) -> Iterator[Candidate]:
        return iter(())


def build_reference(name: str, ids: list[str], ref_len: int, load_noise: Callable[[int], torch.Tensor],
                    manifest=None, ref_dir=None, sample_rate: int = SAMPLE_RATE, seed: int = 0,
                    label_column: str = "noise_type"):
    """The strategy called `name` (the data config's `reference`)."""
    if name in RENAMED:
        raise ValueError(f"reference: {name!r} is now called {RENAMED[name]!r}"
                         + (" (it needs the clean signal: an oracle, not available at deployment)"
                            if name == "same_utterance" else "") + ". Honest choices: "
                         f"{', '.join(REFERENCE_STRATEGIES[:4])}.")
    if name == "oracle_same_utterance":
        return OracleSameUtterance(ref_len)
    if name == "same_noise_type":
        return SameNoiseType(ids, manifest, load_noise, ref_len, seed, label_column)
    if name == "noise_ref_dir":
        return NoiseRefDir(ids, ref_dir, ref_len, sample_rate, seed)
    if name == "from_noisy_pauses":
        return FromNoisyPauses(ref_len, sample_rate)
    if name == "none":
        return NoReference()
    raise ValueError(f"reference: {name!r} is not a strategy; choose one of {', '.join(REFERENCE_STRATEGIES)}.")
