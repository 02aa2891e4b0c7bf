"""Synthetic speech-like signals and noises: the demo corpus and the tests need no download.

The speech stand-in is a small source-filter model: a band-limited sawtooth (glottal-like 1/k harmonic
tilt) with a smoothly moving pitch, shaped by four moving formant resonances, interleaved with
band-passed fricative bursts and pauses, under a syllable-rate amplitude envelope. It is not
intelligible, but it has what matters to an enhancement model: harmonics, formants, onsets and silences.

Every generator is vectorised numpy (loops only over segments or events, never over samples),
deterministic given a `numpy.random.Generator`, and returns float32 at -20 dBFS RMS.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft
from scipy import signal
from scipy.interpolate import PchipInterpolator

from sgmse_nc.audio import SAMPLE_RATE

LEVEL_RMS = 0.1  # -20 dBFS: every generator returns this level; mixing code rescales as it needs

# Vowel formant targets F1..F4 in Hz for an adult male voice (Peterson & Barney style averages).
VOWEL_FORMANTS = np.array([
    [730, 1090, 2440, 3400],  # a
    [270, 2290, 3010, 3700],  # i
    [300, 870, 2240, 3300],  # u
    [530, 1840, 2480, 3500],  # e
    [570, 840, 2410, 3400],  # o
    [660, 1720, 2410, 3500],  # ae
    [490, 1350, 1690, 3300],  # er
], dtype=np.float64)
FORMANT_BANDWIDTHS = np.array([70.0, 100.0, 140.0, 200.0])

# Fricative noise bands (low, high) in Hz: roughly "sh", "s", "f".
FRICATIVE_BANDS = ((2000.0, 4500.0), (3800.0, 7500.0), (1200.0, 7500.0))


@dataclass(frozen=True)
class Speaker:
    """What makes one synthetic voice differ from another."""
    f0_low: float  # pitch range in Hz, within 90-250
    f0_high: float
    formant_scale: float  # vocal-tract length: ~1.0 male, ~1.15-1.2 female


def random_speaker(rng: np.random.Generator) -> Speaker:
    """A voice between a low male (f0 ~ 100 Hz) and a high female one (f0 ~ 210 Hz)."""
    centre = rng.uniform(105.0, 205.0)
    f0_low, f0_high = max(90.0, 0.78 * centre), min(250.0, 1.25 * centre)
    # Higher voices tend to have shorter vocal tracts, hence higher formants.
    formant_scale = 0.97 + 0.2 * (centre - 105.0) / 100.0 + rng.normal(0.0, 0.02)
    return Speaker(float(f0_low), float(f0_high), float(formant_scale))


def _set_level(x: np.ndarray, level: float = LEVEL_RMS) -> np.ndarray:
    return (x * (level / max(float(np.sqrt(np.mean(x ** 2))), 1e-12))).astype(np.float32)


@lru_cache(maxsize=64)
def _bandpass(low: float, high: float, sr: int, order: int) -> np.ndarray:
    """Butterworth band-pass as second-order sections (cached: designing costs more than filtering)."""
    high = min(high, 0.45 * sr)  # at low sample rates the band shrinks to fit below Nyquist
    return signal.butter(order, (min(low, 0.8 * high), high), "bandpass", fs=sr, output="sos")


def _seconds(rng: np.random.Generator, low: float, high: float, sr: int) -> int:
    return int(rng.uniform(low, high) * sr)


# --------------------------------------------------------------------------------------------- speech

def syllable_plan(num_samples: int, rng: np.random.Generator, sr: int = SAMPLE_RATE
                  ) -> list[tuple[int, int, bool]]:
    """Segments (start, stop, voiced) of words of 1-3 syllables; whatever no segment covers is a pause.

    A syllable is a voiced nucleus (100-250 ms), sometimes with a fricative (40-120 ms) before or after;
    syllables in a word are 0-40 ms apart, words 80-350 ms apart.
    """
    segments = []
    t = _seconds(rng, 0.05, 0.3, sr)  # leading silence
    while t < num_samples:
        for _ in range(int(rng.integers(1, 4))):
            fricative = rng.random() < 0.45
            fricative_first = rng.random() < 0.6
            if fricative and fricative_first:
                d = _seconds(rng, 0.04, 0.12, sr)
                segments.append((t, t + d, False))
                t += d
            d = _seconds(rng, 0.10, 0.25, sr)
            segments.append((t, t + d, True))
            t += d
            if fricative and not fricative_first:
                d = _seconds(rng, 0.04, 0.12, sr)
                segments.append((t, t + d, False))
                t += d
            t += _seconds(rng, 0.0, 0.04, sr)
        t += _seconds(rng, 0.08, 0.35, sr)
    return [(a, min(b, num_samples)) + (v,) for a, b, v in segments if a < num_samples]


def _taper(n: int, fraction: float) -> np.ndarray:
    """Flat-topped window whose raised-cosine edges take `fraction` of its length (a Tukey window)."""
    edge = np.minimum(np.arange(n) + 0.5, n - 0.5 - np.arange(n)) / max(fraction * n / 2, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * np.minimum(edge, 1.0))


def _envelopes(plan, num_samples: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Syllable-rate amplitude envelopes (voiced, unvoiced): a tapered hump per segment, zero in pauses."""
    voiced, unvoiced = np.zeros(num_samples), np.zeros(num_samples)
    for start, stop, is_voiced in plan:
        n = stop - start
        if n < 2:
            continue
        hump = _taper(n, 0.5 if is_voiced else 0.8) * rng.uniform(0.5, 1.0)
        (voiced if is_voiced else unvoiced)[start:stop] = hump
    return voiced, unvoiced


def _pitch_contour(num_samples: int, speaker: Speaker, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Smooth f0 in Hz per sample: random targets every 120-200 ms with a falling trend, joined smoothly."""
    step = int(0.16 * sr)
    anchors = np.arange(0, num_samples + step, step)
    anchors = anchors + rng.integers(-step // 4, step // 4 + 1, anchors.size)
    anchors[0], anchors[-1] = 0, max(anchors[-1], num_samples)
    span = speaker.f0_high - speaker.f0_low
    declination = np.linspace(0.25, -0.25, anchors.size) * span  # phrases tend to fall in pitch
    targets = np.clip(speaker.f0_low + span * rng.uniform(0.2, 0.8, anchors.size) + declination,
                      speaker.f0_low, speaker.f0_high)
    # Monotone cubic (PCHIP): smooth glides that never overshoot the speaker's range.
    return PchipInterpolator(anchors, targets)(np.arange(num_samples))


def glottal_source(f0: np.ndarray, rng: np.random.Generator, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited (polyBLEP) sawtooth: all harmonics of f0 with 1/k amplitudes, little aliasing."""
    dt = f0 / sr
    phase = (np.cumsum(dt) + rng.random()) % 1.0
    saw = 2.0 * phase - 1.0
    # polyBLEP: smooth the jump of the naive sawtooth over one sample on each side of it.
    early, late = phase < dt, phase > 1.0 - dt
    x = phase[early] / dt[early]
    saw[early] -= 2 * x - x * x - 1
    x = (phase[late] - 1.0) / dt[late]
    saw[late] -= x * x + 2 * x + 1
    return saw


def _formant_tracks(plan, times: np.ndarray, speaker: Speaker, rng: np.random.Generator, sr: int
                    ) -> np.ndarray:
    """Formant frequencies [len(times), 4] gliding between two vowel targets per voiced syllable."""
    points, targets = [], []
    for start, stop, is_voiced in plan:
        if is_voiced:
            first, second = rng.integers(len(VOWEL_FORMANTS), size=2)
            points += [(start + 0.25 * (stop - start)) / sr, (start + 0.75 * (stop - start)) / sr]
            targets += [VOWEL_FORMANTS[first], VOWEL_FORMANTS[second]]
    if not points:
        points, targets = [0.0], [VOWEL_FORMANTS[0]]
    points, targets = np.asarray(points), np.asarray(targets) * speaker.formant_scale
    tracks = np.stack([np.interp(times, points, targets[:, k]) for k in range(targets.shape[1])], axis=1)
    return np.minimum(tracks, 0.45 * sr)


def formant_response(freqs: np.ndarray, formants: np.ndarray,
                     bandwidths: np.ndarray = FORMANT_BANDWIDTHS) -> np.ndarray:
    """Magnitude of a cascade of 2-pole resonators (Klatt-style): [frames, bins] from formants [frames, K].

    Each resonator has unit gain at 0 Hz, a peak of F/B at F, and falls 12 dB/octave above F.
    """
    f2 = (freqs.astype(np.float32) ** 2)[None, :, None]
    F2 = (formants.astype(np.float32) ** 2)[:, None, :]
    B2 = (bandwidths[: formants.shape[1]].astype(np.float32) ** 2)[None, None, :]
    return np.sqrt(np.prod(F2 ** 2 / ((F2 - f2) ** 2 + B2 * f2), axis=-1))


def filter_frames(x: np.ndarray, response, n_fft: int = 512) -> np.ndarray:
    """Time-varying filtering: multiply each half-overlapping frame's spectrum by `response(centres)`.

    response: called with the frame centres in samples, returns magnitudes [frames, n_fft // 2 + 1].
    Square-root Hann analysis and synthesis windows sum to one at 50 % overlap, so a flat response gives
    the input back; the formant filters ring for a few ms only, far shorter than the frame.
    """
    hop = n_fft // 2
    num_frames = -(-x.size // hop) + 1
    blocks = np.pad(x, (hop, (num_frames + 1) * hop - x.size - hop)).reshape(-1, hop)
    frames = np.concatenate([blocks[:-1], blocks[1:]], axis=1)  # frame i is centred on sample i * hop
    window = np.sqrt(signal.windows.hann(n_fft, sym=False))
    spectra = scipy.fft.rfft(frames * window, axis=1) * response(np.arange(num_frames) * hop)
    out = scipy.fft.irfft(spectra, n=n_fft, axis=1) * window
    blocks = np.zeros((num_frames + 1, hop))
    blocks[:-1] += out[:, :hop]
    blocks[1:] += out[:, hop:]
    return blocks.reshape(-1)[hop:hop + x.size]


def speech_like(num_samples: int, rng: np.random.Generator, sr: int = SAMPLE_RATE,
                speaker: Speaker | None = None) -> np.ndarray:
    """A speech-like utterance of `num_samples` (float32, -20 dBFS RMS) for one (random) speaker."""
    speaker = speaker or random_speaker(rng)
    plan = syllable_plan(num_samples, rng, sr)
    voiced_env, unvoiced_env = _envelopes(plan, num_samples, rng)

    # Voiced: glottal source through moving formants, then the syllable envelope (exact silence in pauses).
    source = glottal_source(_pitch_contour(num_samples, speaker, rng, sr), rng, sr)
    freqs = scipy.fft.rfftfreq(512, 1.0 / sr)
    voiced = filter_frames(source, lambda centres: formant_response(
        freqs, _formant_tracks(plan, centres / sr, speaker, rng, sr))) * voiced_env

    # Unvoiced: each burst is fresh white noise in one of a few fricative bands (the filter's start-up
    # transient is generated and dropped).
    unvoiced, settle = np.zeros(num_samples), 64
    for start, stop, is_voiced in plan:
        if not is_voiced:
            low, high = FRICATIVE_BANDS[int(rng.integers(len(FRICATIVE_BANDS)))]
            burst = signal.sosfilt(_bandpass(low, high, sr, 4), rng.standard_normal(stop - start + settle))
            unvoiced[start:stop] = burst[settle:]
    unvoiced = unvoiced * unvoiced_env

    def active_rms(x, env):
        return np.sqrt(np.sum(x ** 2) / max(np.count_nonzero(env), 1)) + 1e-12

    # Fricatives sit ~12 dB below the vowels, as in real speech.
    speech = voiced / active_rms(voiced, voiced_env) + 0.25 * unvoiced / active_rms(unvoiced, unvoiced_env)
    return _set_level(speech)


# --------------------------------------------------------------------------------------------- noises

def white_noise(num_samples: int, rng: np.random.Generator, sr: int = SAMPLE_RATE) -> np.ndarray:
    return _set_level(rng.standard_normal(num_samples))


def _coloured(num_samples: int, rng: np.random.Generator, sr: int, exponent: float) -> np.ndarray:
    """Noise with power spectrum ~ 1/f**exponent above 20 Hz (flat below, so no DC drift)."""
    size = scipy.fft.next_fast_len(num_samples, real=True)  # awkward lengths make FFTs slow
    spectrum = scipy.fft.rfft(rng.standard_normal(size))
    freqs = np.maximum(scipy.fft.rfftfreq(size, 1.0 / sr), 20.0)
    return _set_level(scipy.fft.irfft(spectrum * freqs ** (-exponent / 2), n=size)[:num_samples])


def pink_noise(num_samples: int, rng: np.random.Generator, sr: int = SAMPLE_RATE) -> np.ndarray:
    return _coloured(num_samples, rng, sr, 1.0)


def brown_noise(num_samples: int, rng: np.random.Generator, sr: int = SAMPLE_RATE) -> np.ndarray:
    return _coloured(num_samples, rng, sr, 2.0)


def babble_noise(num_samples: int, rng: np.random.Generator, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Four to seven simultaneous talkers at random levels (within 6 dB of each other)."""
    # Each voice is rotated by a random offset so that their leading silences do not line up.
    voices = [np.roll(speech_like(num_samples, rng, sr), int(rng.integers(num_samples)))
              * 10 ** (rng.uniform(-6, 0) / 20) for _ in range(int(rng.integers(4, 8)))]
    return _set_level(np.sum(voices, axis=0))


def hum_noise(num_samples: int, rng: np.random.Generator, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Machine hum: a slowly wobbling fundamental (mains or motor) with harmonics, over a rumble bed."""
    f0 = rng.choice([50.0, 60.0]) if rng.random() < 0.5 else rng.uniform(70.0, 160.0)
    t = np.arange(num_samples) / sr
    wobble = 1.0 + 0.004 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * np.cumsum(f0 * wobble) / sr
    harmonics = np.arange(1, max(2, min(16, int(0.45 * sr / f0))) + 1)
    amplitudes = harmonics ** -0.7 * rng.uniform(0.2, 1.0, harmonics.size)
    offsets = rng.uniform(0, 2 * np.pi, harmonics.size)
    # Harmonic k is the imaginary part of rotor**k: repeated complex products are much cheaper than sines.
    rotor, power, tonal = np.exp(1j * phase), np.ones(num_samples, complex), np.zeros(num_samples)
    for amplitude, offset in zip(amplitudes, offsets):
        power *= rotor
        tonal += amplitude * (power * np.exp(1j * offset)).imag
    bed = brown_noise(num_samples, rng, sr) + 0.3 * pink_noise(num_samples, rng, sr)
    return _set_level(_set_level(tonal) + 10 ** (rng.uniform(-15, -6) / 20) * bed)


def traffic_noise(num_samples: int, rng: np.random.Generator, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Low band-passed noise whose level swells and fades as vehicles pass (non-stationary)."""
    high = float(rng.choice([1200.0, 1800.0, 2500.0]))
    rumble = signal.sosfilt(_bandpass(40.0, high, sr, 2), pink_noise(num_samples, rng, sr))
    t = np.arange(num_samples) / sr
    duration = num_samples / sr
    passes = rng.uniform(-1.0, duration + 1.0, size=max(1, int(rng.poisson(0.6 * duration)) + 1))
    widths = rng.uniform(0.4, 1.5, passes.size)
    levels = rng.uniform(0.5, 1.0, passes.size)
    swells = (levels[:, None] * np.exp(-0.5 * ((t[None] - passes[:, None]) / widths[:, None]) ** 2)).sum(0)
    drift = 1.0 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.05, 0.3) * t + rng.uniform(0, 2 * np.pi))
    return _set_level(rumble * (0.15 + swells) * drift)


def impulsive_noise(num_samples: int, rng: np.random.Generator, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Clicks and door knocks (groups of 1-3 damped low resonances) at random times over a faint floor.

    About two events per second, and always at least one, so any stretch of a second or more is likely
    to hold an event.
    """
    out = 10 ** (-45 / 20) * rng.standard_normal(num_samples)
    count = max(1, int(rng.poisson(2.0 * num_samples / sr)))
    for start in np.sort(rng.integers(0, num_samples, size=count)):
        if rng.random() < 0.5:  # click: a few ms of decaying broadband noise
            n = int(0.006 * sr)
            event = rng.standard_normal(n) * np.exp(-np.arange(n) / (0.0015 * sr))
            hits = [0]
        else:  # knock: damped resonance of a panel, repeated 1-3 times ~150 ms apart
            n = int(0.12 * sr)
            k = np.arange(n) / sr
            event = np.sin(2 * np.pi * rng.uniform(80, 400) * k) * np.exp(-k / rng.uniform(0.015, 0.05))
            event += 0.3 * rng.standard_normal(n) * np.exp(-k / 0.003)  # the hit itself
            hits = np.arange(int(rng.integers(1, 4))) * int(rng.uniform(0.12, 0.2) * sr)
        gain = rng.uniform(0.3, 1.0)
        for hit in hits:
            a = start + hit
            b = min(a + n, num_samples)
            if a < num_samples:
                out[a:b] += gain * event[: b - a]
    return _set_level(out)


NOISES = {
    "white": white_noise,
    "pink": pink_noise,
    "brown": brown_noise,
    "babble": babble_noise,
    "hum": hum_noise,
    "traffic": traffic_noise,
    "impulsive": impulsive_noise,
}
NON_STATIONARY = ("babble", "traffic", "impulsive")


def make_noise(name: str, num_samples: int, rng: np.random.Generator, sr: int = SAMPLE_RATE) -> np.ndarray:
    if name not in NOISES:
        raise ValueError(f"unknown synthetic noise type {name!r}; choose from {', '.join(NOISES)}.")
    return NOISES[name](num_samples, rng, sr)
