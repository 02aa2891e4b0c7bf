"""The reference policy, stated once and enforced by every dataset, builder and the demo corpus:

    a noise reference never overlaps the noise mixed into the input, and is never a near-copy of it.

Near-copy is measured by `similarity(reference, noise)`: the maximum normalised cross-correlation over
all lags (FFT based), window-normalised (each lag is normalised by the energies of the overlapping parts,
so a short reference that copies any stretch of a long noise scores 1), refined at fractional lags
(pools are resampled, so a copy may sit between two samples), on both signals whitened by an LPC filter
fitted to the mixed noise. Whitening matters: raw coloured or periodic noises correlate with any other
stretch of themselves (brown noise, hum), while after whitening two independent stretches of one noise
process decorrelate and a copy, at any gain and lag, still scores about 1. A raw correlation of at least
`RAW_COPY` is a copy whatever whitening says.

`ReferencePolicy.choose` takes the candidates a strategy proposes (another stretch first, then another
recording of the class) and returns the first honest one. When none is, it does not fall back silently:
it raises HonestyError (`on_failure: error`) or returns the null condition, counted (`on_failure: null`).
Every choice carries what a manifest row or a batch reports: source, offset, relation, the measured
similarity and how many candidates were rejected for overlap and for being a near-copy.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import scipy.fft
import torch
from scipy import linalg, signal

from sgmse_nc.data.errors import HonestyError

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.5  # whitened max normalised cross-correlation at or above this: a near-copy
RAW_COPY = 0.99  # raw max normalised cross-correlation at or above this: a copy, whatever whitening says
LPC_ORDER = 16
MIN_OVERLAP = 0.5  # lags where less than this fraction of the shorter signal overlaps are not scored
FRACTIONS = np.array([-0.375, -0.25, -0.125, 0.125, 0.25, 0.375])  # sub-sample offsets tried at the best lags
SINC_HALF_WIDTH = 16
ON_FAILURE = ("error", "null")


def lpc_filter(noise: np.ndarray, order: int = LPC_ORDER) -> np.ndarray:
    """Prediction-error filter [1, -a1, ..., -ap] of `noise` (autocorrelation method, lightly regularised)."""
    x = noise - noise.mean()
    n = scipy.fft.next_fast_len(2 * x.size)
    r = scipy.fft.irfft(np.abs(scipy.fft.rfft(x, n)) ** 2, n)[:order + 1]
    if r[0] <= 0:
        return np.ones(1)
    r[0] *= 1.0 + 1e-6  # a pure tone would make the system singular
    a = linalg.solve_toeplitz(r[:order], r[1:order + 1])
    return np.concatenate([[1.0], -a])


def max_xcorr(a: np.ndarray, b: np.ndarray, min_overlap: float = MIN_OVERLAP) -> float:
    """Max over all (integer and fractional) lags of |<a, b shifted>| / (|a_overlap| |b_overlap|)."""
    short, long = (a, b) if a.size <= b.size else (b, a)
    m, n_long = short.size, long.size
    if m == 0:
        return 0.0
    n = scipy.fft.next_fast_len(m + n_long - 1)
    spectrum = scipy.fft.rfft(long, n) * np.conj(scipy.fft.rfft(short, n))
    circular = scipy.fft.irfft(spectrum, n)
    lags = np.arange(-(m - 1), n_long)  # long index = short index + lag
    corr = circular[lags % n]
    k0, k1 = np.maximum(0, -lags), np.minimum(m, n_long - lags)  # overlapping part of `short`
    e_short = np.concatenate([[0.0], np.cumsum(short ** 2)])
    e_long = np.concatenate([[0.0], np.cumsum(long ** 2)])
    energy = (e_short[k1] - e_short[k0]) * (e_long[k1 + lags] - e_long[k0 + lags])
    floor = 1e-12 * max(e_short[-1] * e_long[-1] / max(n_long, 1), 1e-30)
    valid = (k1 - k0 >= max(1, int(min_overlap * m))) & (energy > floor)
    if not valid.any():
        return 0.0
    norm = np.where(valid, np.sqrt(np.maximum(energy, floor)), np.inf)
    score = np.abs(corr) / norm
    best = np.argpartition(score, -4)[-4:]  # refine around the best integer lags
    # Band-limited (Hann-windowed sinc) interpolation of the correlation between integer lags.
    taps = np.arange(-SINC_HALF_WIDTH, SINC_HALF_WIDTH + 1)
    offsets = FRACTIONS[:, None] - taps[None, :]
    kernel = np.sinc(offsets) * (0.5 + 0.5 * np.cos(np.pi * offsets / (SINC_HALF_WIDTH + 1)))
    neighbours = circular[(lags[best][:, None] + taps[None, :]) % n]  # [best, taps]
    refined = np.abs(neighbours @ kernel.T) / norm[best][:, None]
    return float(min(1.0, max(score.max(), refined.max())))


@dataclass(frozen=True)
class Similarity:
    whitened: float  # the measure the threshold applies to
    raw: float

    def is_copy(self, threshold: float = DEFAULT_THRESHOLD) -> bool:
        return self.whitened >= threshold or self.raw >= RAW_COPY


def _numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64).reshape(-1)


def similarity(reference, noise, order: int = LPC_ORDER) -> Similarity:
    """How much `reference` looks like a copy of (any stretch of) `noise`, the noise mixed into the input."""
    reference, noise = _numpy(reference), _numpy(noise)
    whitener = lpc_filter(noise, order)
    whitened = max_xcorr(signal.lfilter(whitener, [1.0], reference), signal.lfilter(whitener, [1.0], noise))
    return Similarity(round(whitened, 4), round(max_xcorr(reference, noise), 4))


@dataclass
class Candidate:
    """A reference a strategy proposes. `noise`: the noise it must not copy, when it is not the caller's
    (a candidate drawn together with its own noise); `overlapping`: shares samples with that noise."""
    reference: torch.Tensor
    source: str = ""
    offset: str = ""
    relation: str = ""
    noise: torch.Tensor | None = None
    overlapping: bool = False
    exempt: bool = False  # taken from the noisy input itself (from_noisy_pauses): what a user has
    payload: object = None


@dataclass
class Choice:
    reference: torch.Tensor
    source: str
    offset: str
    relation: str
    xcorr: float  # whitened similarity to the mixed noise (NaN for the null condition)
    rejected_overlap: int = 0
    rejected_copy: int = 0
    null: bool = False
    payload: object = None

    def batch_fields(self) -> dict:
        """What a batch carries, so counters add up across workers and ranks (see ReferenceCounter)."""
        return {"ref_xcorr": torch.tensor(self.xcorr, dtype=torch.float32),
                "ref_rejected_overlap": torch.tensor(self.rejected_overlap),
                "ref_rejected_copy": torch.tensor(self.rejected_copy), "ref_null": torch.tensor(self.null)}

    def manifest_fields(self) -> dict:
        return {"reference_file": self.source, "reference_offset": self.offset, "reference_relation": self.relation,
                "reference_max_xcorr": "" if self.null else self.xcorr}


@dataclass
class ReferencePolicy:
    """threshold: whitened similarity at or above which a candidate is a near-copy.
    on_failure: "error" (HonestyError naming the fix) or "null" (the null condition, counted).
    tries: candidates examined at most per example.
    null_option: how the user asks for the null condition where they can (a data config's `on_failure: null`);
    "" where no option does (the test-set builders): the error's hint then names none."""
    threshold: float = DEFAULT_THRESHOLD
    on_failure: str = "error"
    tries: int = 8
    null_option: str = "on_failure: null"
    counts: dict = field(default_factory=lambda: {"checked": 0, "rejected_overlap": 0, "rejected_copy": 0,
                                                   "null": 0})

    def __post_init__(self):
        if self.on_failure not in ON_FAILURE:
            raise ValueError(f"on_failure must be one of {', '.join(ON_FAILURE)}, not {self.on_failure!r}.")
        if not 0.0 < float(self.threshold) <= 1.0:
            raise ValueError(f"the near-copy threshold must lie in (0, 1], not {self.threshold}.")

    def choose(self, noise, candidates: Iterable[Candidate], ref_len: int, what: str, fix: str = "") -> Choice:
        overlap = copy = 0
        best = None
        for k, candidate in enumerate(candidates):
            if k >= self.tries:
                break
            self.counts["checked"] += 1
            own_noise = noise if candidate.noise is None else candidate.noise
            if candidate.overlapping and not candidate.exempt:
                overlap += 1
                continue
            measured = similarity(candidate.reference, own_noise)
            if measured.is_copy(self.threshold) and not candidate.exempt:
                copy += 1
                best = measured if best is None or measured.whitened < best.whitened else best
                continue
            self.counts["rejected_overlap"] += overlap
            self.counts["rejected_copy"] += copy
            return Choice(candidate.reference, candidate.source, candidate.offset, candidate.relation,
                          measured.whitened, overlap, copy, payload=candidate.payload)
        self.counts["rejected_overlap"] += overlap
        self.counts["rejected_copy"] += copy
        reason = (f"{what}: no honest noise reference ({overlap} candidate(s) overlapped the mixed noise, {copy} "
                  f"were near-copies of it" + (f", best whitened max xcorr {best.whitened:.2f}" if best else "")
                  + f", threshold {self.threshold}).")
        if self.on_failure == "error":
            fix = fix or "Use longer or more recordings per class"
            raise HonestyError(f"{reason} {fix}, or set {self.null_option} to use the null condition for such "
                               f"examples (counted)." if self.null_option else f"{reason} {fix}.")
        self.counts["null"] += 1
        if self.counts["null"] == 1:
            log.warning("%s Using the null condition (counted in ref_null).", reason)
        return Choice(torch.zeros(ref_len), "", "", "none", float("nan"), overlap, copy, null=True)


def pair_candidates(draw, tries: int, fallback=None) -> Iterable[Candidate]:
    """Candidates from noise pairs (sgmse_nc.data.noise_source.NoisePair): `tries` draws of `draw()` (another
    stretch each time), then `tries` of `fallback()` (another recording of the class), each checked against
    its own noise."""
    for make in (draw, fallback):
        for _ in range(tries if make is not None else 0):
            pair = make()
            yield Candidate(pair.reference, pair.reference_file, pair.reference_offset, pair.relation, pair.noise,
                            pair.overlapping, payload=pair)
