"""Noise augmentation as composable noise sources.

A source has one method, `draw(length, ref_length, rng) -> NoisePair`: the noise to mix and a reference
from the same scene. Augmentations wrap sources, so whatever they do to the noise they also do to the
reference (same mixing weights, same speed change), and the reference stays honest:

    SyntheticSource   white / pink / brown (sgmse_nc.data.synthetic); the reference is an independent draw
    BabbleSource      sum of N other utterances of the speech pool; the reference is another babble of N
    MixSource         α·a + (1 − α)·b of two sources at equal RMS, α ∈ [0.3, 0.7]
    StretchSource     speed change by a factor (resampling), noise and reference alike
    ConcatSource      2-3 independent draws of a source, crossfaded end to end (non-stationary noise)
    VaryingGainSource a source under a slow gain ramp or sinusoid (non-stationary level)
    EventSource       sudden short events of one source over a background of another

`NoiseAugment` holds the probabilities and builds one source per example. The random crop position is
not an option here: training crops (speech and noise) are always drawn at random positions.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from sgmse_nc.audio import SAMPLE_RATE, resample_audio, rms
from sgmse_nc.data.example import fit_length
from sgmse_nc.data.noise_pool import AudioPool
from sgmse_nc.data.noise_source import NoisePair, shared_class
from sgmse_nc.data.synthetic import make_noise


def join(values, sep: str = ";") -> str:
    return sep.join(str(v) for v in values)


def crossfade_concat(segments: list[torch.Tensor], fade: int) -> torch.Tensor:
    """Concatenate with `fade`-sample equal-power (sine/cosine) crossfades: the level of uncorrelated
    noises stays constant through each transition. The result is sum(lengths) − (k − 1)·fade long."""
    fade = min([fade] + [s.shape[-1] for s in segments[1:]] + [segments[0].shape[-1]])
    out = segments[0]
    if fade <= 0:
        return torch.cat(segments)
    ramp = torch.sin(0.5 * math.pi * (torch.arange(fade, dtype=out.dtype) + 0.5) / fade)
    fade_in, fade_out = ramp, torch.flip(ramp, [0])
    for seg in segments[1:]:
        overlap = out[-fade:] * fade_out + seg[:fade] * fade_in
        out = torch.cat([out[:-fade], overlap, seg[fade:]])
    return out


class SyntheticSource:
    def __init__(self, kind: str, sample_rate: int = SAMPLE_RATE):
        make_noise(kind, 1024, np.random.default_rng(0), sample_rate)  # unknown kinds fail here, not mid-epoch
        self.kind, self.sample_rate = kind, sample_rate

    def draw(self, length: int, ref_length: int, rng: np.random.Generator) -> NoisePair:
        noise = torch.from_numpy(make_noise(self.kind, length, rng, self.sample_rate))
        reference = torch.from_numpy(make_noise(self.kind, ref_length, rng, self.sample_rate))
        return NoisePair(noise, reference, self.kind, f"synthetic:{self.kind}", "0", f"synthetic:{self.kind}", "0",
                         relation="independent_draw", noise_class=self.kind)


class BabbleSource:
    """Babble of `talkers` (inclusive range) utterances of the speech pool, each at the same RMS.

    `exclude` (the clean utterance of the example) never talks in its own babble.
    """

    def __init__(self, speech: AudioPool, talkers: tuple[int, int] = (3, 6), exclude: int | None = None):
        self.speech, self.talkers, self.exclude = speech, (int(talkers[0]), int(talkers[1])), exclude
        if len(speech) - (exclude is not None) < 1:
            raise ValueError(f"babble needs other utterances than the clean one; speech pool {speech.name!r} "
                             f"has {len(speech)} file(s).")

    def babble(self, length: int, rng: np.random.Generator) -> tuple[torch.Tensor, list[str], list[int]]:
        count = int(rng.integers(self.talkers[0], self.talkers[1] + 1))
        candidates = np.array([i for i in range(len(self.speech)) if i != self.exclude])
        picks = rng.choice(candidates, size=count, replace=count > candidates.size)
        total, names, offsets = torch.zeros(length), [], []
        for i in picks:
            i = int(i)
            start = int(rng.integers(0, max(self.speech.num_samples(i) - length, 0) + 1))
            voice = self.speech.read_looped(i, start, length)
            total += voice / rms(voice).clamp_min(1e-8)
            names.append(self.speech.files[i].name)
            offsets.append(start)
        return total / math.sqrt(count), names, offsets

    def draw(self, length: int, ref_length: int, rng: np.random.Generator) -> NoisePair:
        noise, names, offsets = self.babble(length, rng)
        reference, ref_names, ref_offsets = self.babble(ref_length, rng)
        return NoisePair(noise, reference, "babble", join(names), join(offsets), join(ref_names), join(ref_offsets),
                         relation="other_babble", noise_class="babble")


class MixSource:
    """α·a + (1 − α)·b with both noises first brought to unit RMS (their references get the same gains)."""

    def __init__(self, first, second, alpha_range: tuple[float, float] = (0.3, 0.7)):
        self.first, self.second, self.alpha_range = first, second, alpha_range

    def draw(self, length: int, ref_length: int, rng: np.random.Generator) -> NoisePair:
        a = self.first.draw(length, ref_length, rng)
        b = self.second.draw(length, ref_length, rng)
        alpha = float(rng.uniform(*self.alpha_range))
        wa = alpha / rms(a.noise).clamp_min(1e-8)
        wb = (1 - alpha) / rms(b.noise).clamp_min(1e-8)
        pair = NoisePair(wa * a.noise + wb * b.noise, wa * a.reference + wb * b.reference,
                         f"{a.category}+{b.category}", join([a.noise_file, b.noise_file]),
                         join([a.noise_offset, b.noise_offset]), join([a.reference_file, b.reference_file]),
                         join([a.reference_offset, b.reference_offset]), a.overlapping or b.overlapping,
                         join([a.relation, b.relation]), noise_class=shared_class([a, b]))
        pair.info = {**a.info, **b.info, "alpha": alpha}
        return pair


class StretchSource:
    """Speed change by `factor` (> 1: faster and higher) via resampling, drawn from `factor_range`.

    The factor is rounded to 1/100 so the resampling kernel stays small (rates 100·f → 100).
    """

    def __init__(self, inner, factor_range: tuple[float, float] = (0.9, 1.1)):
        self.inner, self.factor_range = inner, factor_range

    @staticmethod
    def stretch(wav: torch.Tensor, factor: float, length: int) -> torch.Tensor:
        return fit_length(resample_audio(wav, int(round(100 * factor)), 100), length)

    def draw(self, length: int, ref_length: int, rng: np.random.Generator) -> NoisePair:
        factor = round(float(rng.uniform(*self.factor_range)), 2)
        pair = self.inner.draw(math.ceil(length * factor) + 1, math.ceil(ref_length * factor) + 1, rng)
        pair.noise = self.stretch(pair.noise, factor, length)
        pair.reference = self.stretch(pair.reference, factor, ref_length)
        pair.info["factor"] = factor
        return pair


class ConcatSource:
    """Segments crossfaded end to end, each at unit RMS; the reference is built the same way from the
    segments' references. `inner` is one source drawn `segments` (inclusive range) times, or a list of
    sources, one segment each (different noise types in a row)."""

    def __init__(self, inner, segments: tuple[int, int] = (2, 3), crossfade: int = 800):
        self.inner, self.segments, self.crossfade = inner, (int(segments[0]), int(segments[1])), crossfade

    def draw(self, length: int, ref_length: int, rng: np.random.Generator) -> NoisePair:
        if isinstance(self.inner, (list, tuple)):
            sources = list(self.inner)
        else:
            sources = [self.inner] * int(rng.integers(self.segments[0], self.segments[1] + 1))
        count = len(sources)
        fade = min(self.crossfade, length // (4 * count), ref_length // (4 * count))
        # Random segment lengths, none shorter than half an equal share.
        total = length + (count - 1) * fade
        lengths = np.floor((0.5 / count + 0.5 * rng.dirichlet(np.ones(count))) * total).astype(int)
        lengths[-1] += total - lengths.sum()
        ref_piece = -(-(ref_length + (count - 1) * fade) // count)
        pairs = [source.draw(int(n), ref_piece, rng) for source, n in zip(sources, lengths)]
        gains = [1.0 / rms(p.noise).clamp_min(1e-8) for p in pairs]
        noise = crossfade_concat([g * p.noise for g, p in zip(gains, pairs)], fade)
        reference = crossfade_concat([g * p.reference for g, p in zip(gains, pairs)], fade)
        pair = NoisePair(fit_length(noise, length), fit_length(reference, ref_length),
                         ">".join(p.category for p in pairs), join(p.noise_file for p in pairs),
                         join(p.noise_offset for p in pairs), join(p.reference_file for p in pairs),
                         join(p.reference_offset for p in pairs), any(p.overlapping for p in pairs),
                         join(p.relation for p in pairs), noise_class=shared_class(pairs))
        pair.info["segment_lengths"] = lengths.tolist()
        return pair


# ------------------------------------------------------------------------ non-stationary noise

def gain_envelope(length: int, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> tuple[torch.Tensor, str]:
    """A slow gain curve (linear factor [length]) and its description: a ramp or a sinusoid in dB with a
    peak-to-peak depth of 6-12 dB."""
    depth = float(rng.uniform(6.0, 12.0))
    t = torch.arange(length, dtype=torch.float64) / sample_rate
    if rng.random() < 0.5:
        direction = 1.0 if rng.random() < 0.5 else -1.0
        db = direction * depth * (torch.linspace(-0.5, 0.5, length, dtype=torch.float64))
        detail = f"ramp {direction * depth:+.1f} dB"
    else:
        freq, phase = float(rng.uniform(0.2, 0.6)), float(rng.uniform(0, 2 * np.pi))
        db = 0.5 * depth * torch.sin(2 * np.pi * freq * t + phase)
        detail = f"sine {freq:.2f} Hz {depth:.1f} dB"
    return (10 ** (db / 20)).float(), detail


def event_envelope(length: int, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Sudden onset (5 ms attack), 30 ms release: an event that starts abruptly without a click."""
    attack, release = min(int(0.005 * sample_rate), length // 2), min(int(0.03 * sample_rate), length // 2)
    env = torch.ones(length)
    env[:attack] = torch.linspace(0, 1, attack)
    env[length - release:] = torch.linspace(1, 0, release)
    return env


def add_events(background: torch.Tensor, source, count: int, rng: np.random.Generator,
               sample_rate: int = SAMPLE_RATE) -> tuple[torch.Tensor, list[NoisePair], list[int], list[float]]:
    """Add `count` short events (0.15-0.6 s stretches of `source`) at random times, each 6-18 dB above the
    background RMS. Returns the noise, the events' pairs (their references are other events of the
    source), their positions and their event-to-background ratios."""
    noise, pairs, positions, ratios = background.clone(), [], [], []
    level = rms(background)
    for _ in range(count):
        n = min(int(rng.uniform(0.15, 0.6) * sample_rate), background.shape[-1])
        pair = source.draw(n, n, rng)
        ratio = float(rng.uniform(6.0, 18.0))
        at = int(rng.integers(0, background.shape[-1] - n + 1))
        gain = level * 10 ** (ratio / 20) / rms(pair.noise).clamp_min(1e-8)
        noise[at:at + n] += gain * pair.noise * event_envelope(n, sample_rate)
        pair.reference = pair.reference * gain  # same level as the event it stands for
        pairs.append(pair)
        positions.append(at)
        ratios.append(ratio)
    return noise, pairs, positions, ratios


class VaryingGainSource:
    """`inner` under a slow gain ramp or sinusoid (`gain_envelope`): a noise whose level changes within the
    utterance. The reference carries the utterance's average noise level, without the modulation."""

    def __init__(self, inner, sample_rate: int = SAMPLE_RATE):
        self.inner, self.sample_rate = inner, sample_rate

    def draw(self, length: int, ref_length: int, rng: np.random.Generator) -> NoisePair:
        pair = self.inner.draw(length, ref_length, rng)
        envelope, detail = gain_envelope(length, rng, self.sample_rate)
        steady = pair.noise
        pair.noise = steady * envelope
        pair.reference = pair.reference * (rms(pair.noise) / rms(steady).clamp_min(1e-8))
        pair.info["gain"] = detail
        return pair


class EventSource:
    """Sudden short events of `events` (about one per 2 s, at least one) over a `background` noise; the
    reference is the background's reference with one other event of the same type at the same ratio."""

    def __init__(self, background, events, sample_rate: int = SAMPLE_RATE):
        self.background, self.events, self.sample_rate = background, events, sample_rate

    def draw(self, length: int, ref_length: int, rng: np.random.Generator) -> NoisePair:
        pair = self.background.draw(length, ref_length, rng)
        count = 1 + int(rng.poisson(0.5 * length / self.sample_rate))
        pair.noise, events, positions, ratios = add_events(pair.noise, self.events, count, rng, self.sample_rate)
        event = events[0]
        n = min(event.reference.shape[-1], ref_length // 2)
        at = int(rng.integers(0, ref_length - n + 1))
        reference = pair.reference.clone()
        reference[at:at + n] += event.reference[:n] * event_envelope(n, self.sample_rate)
        pair.reference = reference
        pair.noise_file = join([pair.noise_file] + [e.noise_file for e in events])
        pair.noise_offset = join([pair.noise_offset] + [e.noise_offset for e in events])
        pair.reference_file = join([pair.reference_file, event.reference_file])
        pair.reference_offset = join([pair.reference_offset, event.reference_offset])
        pair.relation = join([pair.relation, event.relation])
        pair.overlapping = pair.overlapping or event.overlapping
        pair.noise_class = shared_class([pair, *events])
        pair.info["events"] = (f"{count} events at " + "/".join(f"{p / self.sample_rate:.2f}s" for p in positions)
                               + " ratio " + "/".join(f"{r:.1f}dB" for r in ratios))
        return pair


@dataclass
class NoiseAugment:
    """Probabilities of each augmentation, applied per example.

    The base noise is white / pink / brown / babble with p_white / p_pink / p_brown / p_babble (their sum at
    most 1), else the noise pools. Then, independently: mixing with a second base noise (p_mix), concatenating
    segments (p_concat), speed change (p_stretch).
    """
    p_white: float = 0.0
    p_pink: float = 0.0
    p_brown: float = 0.0
    p_babble: float = 0.0
    p_mix: float = 0.0
    p_concat: float = 0.0
    p_stretch: float = 0.0
    babble_talkers: tuple[int, int] = (3, 6)
    mix_alpha: tuple[float, float] = (0.3, 0.7)
    concat_segments: tuple[int, int] = (2, 3)
    crossfade_seconds: float = 0.05
    stretch_range: tuple[float, float] = (0.9, 1.1)
    sample_rate: int = SAMPLE_RATE

    def __post_init__(self):
        probs = {k: v for k, v in vars(self).items() if k.startswith("p_")}
        bad = [k for k, v in probs.items() if not 0.0 <= float(v) <= 1.0]
        if bad:
            raise ValueError(f"augmentation probabilities must lie in [0, 1]: {', '.join(bad)}.")
        if self.p_white + self.p_pink + self.p_brown + self.p_babble > 1.0 + 1e-9:
            raise ValueError("p_white + p_pink + p_brown + p_babble must not exceed 1 (the rest uses the noise pools).")
        if not 0.0 <= self.mix_alpha[0] <= self.mix_alpha[1] <= 1.0:
            raise ValueError(f"mix_alpha {list(self.mix_alpha)} must be a range inside [0, 1].")
        if not 0.0 < self.stretch_range[0] <= self.stretch_range[1]:
            raise ValueError(f"stretch_range {list(self.stretch_range)} must be a positive range.")

    @property
    def noise_classes(self) -> set[str]:
        """The classes its own base noises bring (NoisePair.noise_class): the synthetic kinds and babble it draws."""
        return {kind for kind in ("white", "pink", "brown", "babble") if getattr(self, f"p_{kind}") > 0}

    def base(self, pools, rng: np.random.Generator, speech: AudioPool | None, exclude: int | None):
        u = float(rng.random())
        for kind in ("white", "pink", "brown"):
            p = getattr(self, f"p_{kind}")
            if u < p:
                return SyntheticSource(kind, self.sample_rate)
            u -= p
        if u < self.p_babble:
            if speech is None:
                raise ValueError("p_babble > 0 needs a speech pool to make babble from.")
            return BabbleSource(speech, self.babble_talkers, exclude)
        return pools

    def source(self, pools, rng: np.random.Generator, speech: AudioPool | None = None, exclude: int | None = None):
        """The noise source of one example: `pools` (a PoolSource) possibly replaced or wrapped."""
        source = self.base(pools, rng, speech, exclude)
        if rng.random() < self.p_mix:
            source = MixSource(source, self.base(pools, rng, speech, exclude), self.mix_alpha)
        if rng.random() < self.p_concat:
            source = ConcatSource(source, self.concat_segments, int(self.crossfade_seconds * self.sample_rate))
        if rng.random() < self.p_stretch:
            source = StretchSource(source, self.stretch_range)
        return source
