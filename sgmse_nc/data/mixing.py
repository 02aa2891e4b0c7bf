"""Dynamic mixing: clean speech from a speech pool + noise from one or more noise pools, mixed on the fly.

Each example draws a speech crop, a noise source (the pools, possibly augmented, see augment.py), an SNR
from `snr_range`, and mixes them with `mix_at_snr`: the SNR is measured over the crop's speech and the
active part of the noise (frame energy, so the silent gaps of ESC-50-like clips do not count), and the
example is scaled down as a whole when a peak would exceed 0.99 (no clipping, SNR unchanged).

Speech files below the spectrogram's rate are refused at construction (upsampled, speech has nothing above its
own Nyquist frequency, and a full-band model would learn that clean speech is band-limited), with the prepare
command that makes a copy at the rate; files above it are resampled down when read, as the noise pools are.

The reference is another stretch of the same noise recording (`reference: same_recording`, disjoint from
the mixed stretch when the recording is long enough) or a stretch of another clip of the same class
(`same_class`), scaled by the same SNR gain as the noise. It is never the mixed stretch, and the reference policy
(sgmse_nc.data.honesty) rejects near-copies (looped or repeated events): another stretch is drawn, then a
stretch of another recording of the class; an example with no honest reference is an error or gets the null
condition (`on_failure`), counted in the batch (`ref_rejected_copy`, `ref_null`).

Each example names the class of its noise (`noise_class`: the pool file's label, or the synthetic kind /
babble of the augmentation; "" when unknown: an unlabelled pool, or a mix of several classes); `noise_classes`
lists every class the dataset can draw (the vocabulary of the auxiliary noise-class head).

Training (`train: true`) draws from the example's own generators (`sampling.example_draws`: the speech
crop, the noise, the SNR and the augmentation each from its own stream, seeded by the run seed, epoch and
position), so runs with the same seed see the same examples; valid/test draw from a generator seeded by
(seed, index), so the same index always gives the same example.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from sgmse_nc.audio import SAMPLE_RATE, AudioError, rms
from sgmse_nc.data.augment import NoiseAugment
from sgmse_nc.data.errors import DataConfigError
from sgmse_nc.data.example import fit_length, make_example
from sgmse_nc.data.honesty import DEFAULT_THRESHOLD, ReferencePolicy, pair_candidates
from sgmse_nc.data.levels import SILENT_RMS, mix_at_snr
from sgmse_nc.data.manifest import speech_id
from sgmse_nc.data.noise_pool import AudioPool
from sgmse_nc.data.noise_source import PoolSource
from sgmse_nc.data.references import STRETCHES
from sgmse_nc.data.sampling import example_draws, same_draws
from sgmse_nc.data.scan import prepare_fix
from sgmse_nc.spec import Spectrogram, dataset_rate

def build_pools(noise_dirs, sample_rate: int = SAMPLE_RATE) -> tuple[list[AudioPool], list[float]]:
    """Pools from config entries: a folder path, or a mapping with `root` and optional `weight`, `labels`
    ('subfolder' or a csv), `label_column`, `file_column`, `trim_silence`, `min_seconds`, `name`, and the
    filters `classes`, `exclude_classes`, `folds`, `exclude_folds` (`fold_column`), `unlabelled` (AudioPool)."""
    if isinstance(noise_dirs, (str, os.PathLike)) or isinstance(noise_dirs, Mapping):
        noise_dirs = [noise_dirs]
    if not noise_dirs:
        raise AudioError("noise_dirs is empty: give at least one noise folder in the data config.")
    pools, weights = [], []
    for entry in noise_dirs:
        options = {"root": entry} if isinstance(entry, (str, os.PathLike)) else dict(entry)
        if "root" not in options:
            raise ValueError(f"noise_dirs entry {options} has no `root` folder.")
        weights.append(float(options.pop("weight", 1.0)))
        options.setdefault("min_seconds", 0.1)
        pools.append(AudioPool(sample_rate=sample_rate, **options))
    return pools, weights


class MixingDataset(Dataset):
    """Speech from `speech_dir` (any folder tree) mixed with noise from `noise_dirs` (see `build_pools`).

    length: examples per epoch (default: one per speech file); example i uses speech file i mod N.
    augment: a NoiseAugment or a mapping of its fields (probabilities); None for no augmentation.
    num_frames: crop length in STFT frames; None gives whole utterances (validation metrics).
    """

    def __init__(self, speech_dir, noise_dirs, spec: Spectrogram | None = None,
                 snr_range: tuple[float, float] = (-5.0, 15.0), reference: str = "same_recording",
                 augment: NoiseAugment | Mapping | None = None, length: int | None = None, train: bool = False,
                 seed: int = 0, num_frames: int | None = 256, ref_seconds: float = 0.25,
                 sample_rate: int | None = None, min_speech_seconds: float = 0.5, snr_over_active: bool = True,
                 xcorr_threshold: float = DEFAULT_THRESHOLD, on_failure: str = "error"):
        self.spec = spec or Spectrogram()
        sample_rate = dataset_rate(self.spec, sample_rate)
        self.sample_rate, self.train, self.seed, self.num_frames = sample_rate, train, seed, num_frames
        self.snr_range = (float(snr_range[0]), float(snr_range[1]))
        if self.snr_range[0] > self.snr_range[1]:
            raise ValueError(f"snr_range {list(snr_range)} must be [low, high].")
        self.snr_over_active = snr_over_active
        self.ref_len = max(int(round(ref_seconds * sample_rate)), self.spec.n_fft)
        try:
            self.speech = AudioPool(speech_dir, sample_rate, min_seconds=min_speech_seconds, name=Path(speech_dir).name)
        except AudioError as err:
            raise DataConfigError("speech_dir", f"{err} (training and validation each need a clean-speech folder; "
                                                f"validation's holds other speakers than training's)") from err
        low = [f for f in self.speech.files if f.file_rate < sample_rate]
        if low:
            raise DataConfigError("speech_dir", f"{low[0].path}: sample rate {low[0].file_rate} Hz ({len(low)} of "
                                                f"{len(self.speech)} speech file(s)), {sample_rate} Hz is needed "
                                                f"(spec.sample_rate). "
                                                + prepare_fix(sample_rate, "speech_dir at its train/clean") + ".")
        try:
            pools, weights = build_pools(noise_dirs, sample_rate)
        except AudioError as err:
            raise DataConfigError("noise_dirs", str(err)) from err
        self.noise = PoolSource(pools, weights, reference)
        # When no stretch of the noise's own recording is honest: another recording of the class.
        labelled = all(pool.by_label for pool in pools)
        self.other_recording = PoolSource(pools, weights, "same_class") if reference == "same_recording" and labelled \
            else None
        self.policy = ReferencePolicy(xcorr_threshold, on_failure)
        if isinstance(augment, Mapping):
            augment = NoiseAugment(**{**dict(augment), "sample_rate": sample_rate})
        self.augment = augment
        self.length = int(length) if length else len(self.speech)
        self.noise_classes = sorted({label for pool in pools for label in pool.by_label}
                                    | (augment.noise_classes if augment is not None else set()))

    def __len__(self) -> int:
        return self.length

    def read_speech(self, i: int, length: int | None, rng: np.random.Generator) -> torch.Tensor:
        """A crop of `length` samples of speech file `i` (zero-padded if shorter); None: the whole file.

        A silent crop is redrawn a few times; a file that stays silent is an error naming it.
        """
        total = self.speech.num_samples(i)
        for _ in range(5):
            if length is None or total <= length:
                clean = self.speech.read(i)
                clean = clean if length is None else fit_length(clean, length)
            else:
                clean = self.speech.read(i, int(rng.integers(0, total - length + 1)), length)
            if rms(clean) > SILENT_RMS:
                return clean
        raise AudioError(f"{self.speech.files[i].path}: speech is silent (RMS below -100 dBFS where it was "
                         f"cropped). Remove the file from the speech folder.")

    def __getitem__(self, index: int) -> dict:
        draws = example_draws(index) if self.train else same_draws(np.random.default_rng([self.seed, index]))
        i = index % len(self.speech)
        length = None if self.num_frames is None else self.spec.num_samples(self.num_frames)
        clean = self.read_speech(i, length, draws.speech)
        source = self.noise
        if self.augment is not None:
            source = self.augment.source(self.noise, draws.augment, self.speech, exclude=i)
        length = clean.shape[-1]
        drawn = []

        def draw(source=source):
            drawn.append(source.draw(length, self.ref_len, draws.noise))
            return drawn[-1]
        fallback = None if self.other_recording is None else lambda: draw(self.other_recording)
        choice = self.policy.choose(None, pair_candidates(draw, STRETCHES, fallback), self.ref_len,
                                    f"example {index} (speech {self.speech.files[i].path})",
                                    fix="Use longer noise recordings, more recordings per class (reference: same_class)")
        pair = choice.payload if choice.payload is not None else drawn[-1]
        snr = float(draws.snr.uniform(*self.snr_range))
        mix = mix_at_snr(clean, pair.noise, choice.reference, snr, self.sample_rate, self.snr_over_active)
        example = make_example(mix.clean, mix.noisy, mix.reference, self.spec)
        example.update(choice.batch_fields())
        example["id"] = f"{speech_id(self.speech.files[i].name)}_{int(index):06d}"
        example["noise_class"] = pair.noise_class or ""
        return example
