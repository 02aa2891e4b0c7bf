"""Noise pairs: a noise stretch to mix and its reference from the same scene (`NoisePair`), drawn from audio
pools (`PoolSource`): another stretch of the same recording, disjoint when it is long enough, or a stretch of
another recording of the same class, level-matched on its active part.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from sgmse_nc.audio import AudioError
from sgmse_nc.data.activity import match_active_rms
from sgmse_nc.data.noise_pool import AudioPool

log = logging.getLogger(__name__)


@dataclass
class NoisePair:
    """A noise stretch to mix and its reference from the same scene (never the same samples, when possible).

    The provenance fields go into test-set manifests; offsets are in samples at the pool rate, and
    composite noises join their parts with ';'.
    """
    noise: torch.Tensor
    reference: torch.Tensor
    category: str
    noise_file: str = ""
    noise_offset: str = ""
    reference_file: str = ""
    reference_offset: str = ""
    overlapping: bool = False  # the reference shares samples with the noise (recording too short)
    relation: str = ""  # how the reference relates to the noise (manifests' reference_relation)
    info: dict = field(default_factory=dict)  # what augmentations chose (mixing weight, speed factor, ...)
    # The class a noise classifier should learn from the reference (the batch's `noise_class`): the pool file's
    # label, a synthetic kind; None when unknown (an unlabelled pool) or when the noise mixes several classes.
    noise_class: str | None = None


def shared_class(pairs) -> str | None:
    """The noise class of a noise made of `pairs` (mixed, concatenated, events over a background): their class
    when they all have the same known one, else None."""
    classes = {p.noise_class for p in pairs}
    return classes.pop() if len(classes) == 1 else None


def disjoint_starts(span: int, length: int, ref_length: int, rng: np.random.Generator) -> tuple[int, int] | None:
    """Starts (noise, reference) of two non-overlapping stretches inside [0, span), or None if they do not fit."""
    slack = span - length - ref_length
    if slack < 0:
        return None
    first_gap = int(rng.integers(0, slack + 1))
    second_gap = int(rng.integers(0, slack - first_gap + 1))
    if rng.random() < 0.5:  # noise first
        return first_gap, first_gap + length + second_gap
    return first_gap + ref_length + second_gap, first_gap


class PoolSource:
    """Noise pairs from pools. reference="same_recording": another stretch of the noise's own file (disjoint
    when the file is long enough, else the rest of the file looped, else an overlapping stretch at another
    offset, counted); "same_class": a stretch of another file of the same class, level-matched.

    One pool is chosen per draw with probability proportional to `weights`; `label` restricts to one class.
    """

    REFERENCES = ("same_recording", "same_class")

    def __init__(self, pools: list[AudioPool] | AudioPool, weights: list[float] | None = None,
                 reference: str = "same_recording", label: str | None = None, warn_overlap: bool = True):
        self.pools = [pools] if isinstance(pools, AudioPool) else list(pools)
        if not self.pools:
            raise AudioError("no noise pool configured: give at least one noise folder.")
        if reference not in self.REFERENCES:
            raise ValueError(f"reference must be one of {', '.join(self.REFERENCES)}, not {reference!r}.")
        if reference == "same_class":
            unlabelled = [p.name for p in self.pools if not p.by_label]
            if unlabelled:
                raise AudioError(f"reference 'same_class' needs class labels but pool(s) {', '.join(unlabelled)} "
                                 f"have none. Set `labels: subfolder` or a label csv, or use 'same_recording'.")
        weights = np.ones(len(self.pools)) if weights is None else np.asarray(weights, dtype=float)
        if weights.shape != (len(self.pools),) or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"noise pool weights {list(weights)} must be one non-negative number per pool "
                             f"({len(self.pools)}), not all zero.")
        self.weights = weights / weights.sum()
        self.reference, self.label, self.warn_overlap = reference, label, warn_overlap
        self.overlapping_references = 0

    def draw(self, length: int, ref_length: int, rng: np.random.Generator) -> NoisePair:
        pool = self.pools[int(rng.choice(len(self.pools), p=self.weights))] if len(self.pools) > 1 else self.pools[0]
        i = pool.random_file(rng, self.label)
        a, b = pool.span(i)
        label = pool.files[i].label or pool.name
        if self.reference == "same_class" and len(pool.label_files(pool.files[i].label)) > 1:
            start = a + int(rng.integers(0, max(b - a - length, 0) + 1))
            noise = pool.read_looped(i, start, length)
            j = pool.random_file(rng, pool.files[i].label, exclude=i)
            ja, jb = pool.span(j)
            ref_start = ja + int(rng.integers(0, max(jb - ja - ref_length, 0) + 1))
            reference = match_active_rms(pool.read_looped(j, ref_start, ref_length), noise, pool.sample_rate,
                                         pool.threshold_db)
            return NoisePair(noise, reference, label, pool.files[i].name, str(start), pool.files[j].name,
                             str(ref_start), relation="same_class_other_recording", noise_class=pool.files[i].label)
        start, ref_start, ref_region, overlapping = self._same_recording(a, b, length, ref_length, rng)
        noise = pool.read_looped(i, start, length)
        reference = pool.read_looped(i, ref_start, ref_length, ref_region)
        if overlapping:
            self.overlapping_references += 1
            if self.overlapping_references == 1 and self.warn_overlap:
                log.warning("noise %s (%d samples active) is too short for a reference outside the mixed "
                            "stretch; such references overlap the noise (counted in `overlapping_references`). "
                            "Use longer recordings or reference: same_class.", pool.files[i].path, b - a)
        relation = "same_recording_overlapping" if overlapping else "same_recording_disjoint"
        return NoisePair(noise, reference, label, pool.files[i].name, str(start), pool.files[i].name,
                         str(ref_start), overlapping=overlapping, relation=relation, noise_class=pool.files[i].label)

    @staticmethod
    def _same_recording(a: int, b: int, length: int, ref_length: int, rng: np.random.Generator):
        """(noise start, reference start, reference region, overlapping) inside the span [a, b)."""
        span = b - a
        starts = disjoint_starts(span, length, ref_length, rng)
        if starts is not None:
            return a + starts[0], a + starts[1], None, False
        rest = span - length
        if rest >= ref_length // 4:  # noise at one end, the reference loops over the rest of the file
            if rng.random() < 0.5:
                return a, a + length, (a + length, b), False
            return b - length, a, (a, a + rest), False
        # The noise covers (almost) the whole span: the reference can only be another offset of it.
        start = a + int(rng.integers(0, max(rest, 0) + 1))
        ref_start = a + (start - a + max(span // 2, 1)) % max(span, 1)
        return start, ref_start, None, True
