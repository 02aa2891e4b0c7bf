"""VoiceBank-DEMAND-layout dataset: `<root>/<subset>/{clean,noisy}/*.wav` with the same file names.

The noise reference is a stretch of `ref_seconds` chosen by the `reference` strategy (sgmse_nc.data.references:
noise_ref_dir by default, same_noise_type, from_noisy_pauses, none, oracle_same_utterance) and checked by the
reference policy (sgmse_nc.data.honesty): never overlapping, never a near-copy of the mixed noise.
Each example names its noise class (`noise_class`, "" when unknown) from the manifest's class column
(`label_column`; by default the first of sgmse_nc.data.manifest.NOISE_CLASS_COLUMNS it has, e.g. `noise_type`);
`noise_classes` lists the classes of the subset.
Training draws crops and stretches at random (the example's own generators, sgmse_nc.data.sampling: the same
seed gives the same crops in every run); valid/test are deterministic (`seed` + item index).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from sgmse_nc.audio import AudioError, list_audio, read_audio
from sgmse_nc.data.example import crop_start, fit_length, make_example
from sgmse_nc.data.sampling import example_draws
from sgmse_nc.data.honesty import DEFAULT_THRESHOLD, Choice, ReferencePolicy
from sgmse_nc.data.manifest import manifest_columns, noise_class_column, noise_class_labels
from sgmse_nc.data.references import build_reference
from sgmse_nc.errors import short_list
from sgmse_nc.spec import Spectrogram, dataset_rate


def mismatch_message(clean: dict, noisy: dict, clean_dir, noisy_dir) -> str | None:
    """Why two {name: path} maps of paired folders do not hold the same names (None when they do)."""
    only_clean, only_noisy = sorted(clean.keys() - noisy.keys()), sorted(noisy.keys() - clean.keys())
    if not (only_clean or only_noisy):
        return None
    return (f"clean and noisy folders do not match: {len(only_clean)} file(s) only in {clean_dir}"
            f"{': ' + short_list(only_clean) if only_clean else ''}; {len(only_noisy)} only in {noisy_dir}"
            f"{': ' + short_list(only_noisy) if only_noisy else ''}.")


def match_pairs(clean_dir: Path, noisy_dir: Path) -> list[tuple[Path, Path]]:
    """Pair files by their path relative to each folder; any unmatched name is an error, never skipped."""
    clean = {p.relative_to(clean_dir).as_posix(): p for p in list_audio(clean_dir)}
    noisy = {p.relative_to(noisy_dir).as_posix(): p for p in list_audio(noisy_dir)}
    if not clean:
        raise AudioError(f"{clean_dir}: no .wav/.flac files found. Check the data root in your config.")
    problem = mismatch_message(clean, noisy, clean_dir, noisy_dir)
    if problem:
        raise AudioError(f"{problem} Both folders need the same file names.")
    return [(clean[k], noisy[k]) for k in sorted(clean)]


class PairedFolderDataset(Dataset):
    """reference: noise_ref_dir | same_noise_type | from_noisy_pauses | none | oracle_same_utterance (see
    sgmse_nc.data.references); every reference passes the policy of sgmse_nc.data.honesty.
    manifest: noise labels, for same_noise_type and the batch's `noise_class` (default
        `<root>/<subset>/manifest.csv`; column `label_column`, by default the first noise-class column it has).
    ref_dir: noise-only files for noise_ref_dir (default `<root>/<subset>/noise_ref`).
    seed: fixes the evaluation choices (item i draws from default_rng((seed, i))).
    xcorr_threshold / on_failure: the reference policy (near-copy threshold; "error" or "null" when an
        example has no honest reference).
    """

    def __init__(self, root, subset: str, spec: Spectrogram | None = None, num_frames: int | None = 256,
                 ref_seconds: float = 0.25, train: bool = False, sample_rate: int | None = None,
                 max_files: int | None = None, reference: str = "noise_ref_dir", manifest=None, ref_dir=None,
                 seed: int = 0, label_column: str | None = None, xcorr_threshold: float = DEFAULT_THRESHOLD,
                 on_failure: str = "error"):
        self.root, self.subset = Path(root), subset
        self.spec = spec or Spectrogram()
        sample_rate = dataset_rate(self.spec, sample_rate)
        self.num_frames, self.train, self.sample_rate = num_frames, train, sample_rate
        self.ref_len = max(int(round(ref_seconds * sample_rate)), self.spec.n_fft)
        self.pairs = match_pairs(self.root / subset / "clean", self.root / subset / "noisy")
        if max_files:
            self.pairs = self.pairs[:max_files]
        self.reference_name = reference
        manifest = manifest or self.root / subset / "manifest.csv"
        ids = [self.file_id(i) for i in range(len(self.pairs))]
        # same_noise_type needs the column: a manifest without one is refused naming the default
        label_column = noise_class_column(manifest_columns(manifest), label_column) or label_column or "noise_type"
        self.ref_strategy = build_reference(
            reference, ids, self.ref_len, self.load_noise, manifest=manifest,
            ref_dir=ref_dir or self.root / subset / "noise_ref",
            sample_rate=sample_rate, seed=seed, label_column=label_column)
        labels = noise_class_labels(manifest, label_column)
        self.noise_class_of = [labels.get(utt, "") for utt in ids]
        self.noise_classes = sorted(set(self.noise_class_of) - {""})
        self.policy = ReferencePolicy(xcorr_threshold, on_failure)

    def __len__(self) -> int:
        return len(self.pairs)

    def file_id(self, index: int) -> str:
        return self.pairs[index][0].relative_to(self.root / self.subset / "clean").with_suffix("").as_posix()

    def load_pair(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        clean_path, noisy_path = self.pairs[index]
        clean = read_audio(clean_path, self.sample_rate)
        noisy = read_audio(noisy_path, self.sample_rate)
        if clean.shape != noisy.shape:
            raise AudioError(f"{noisy_path}: {noisy.numel()} samples but {clean_path} has {clean.numel()}. "
                             f"Clean and noisy files must have the same length.")
        return clean, noisy

    def load_noise(self, index: int) -> torch.Tensor:
        clean, noisy = self.load_pair(index)
        return noisy - clean

    def reference(self, index: int, noisy: torch.Tensor, clean: torch.Tensor, start: int, length: int,
                  rng: np.random.Generator | None) -> Choice:
        """The honest noise reference of item `index` for the crop [start, start + length) (rng None in
        evaluation): the first candidate of the strategy that the policy accepts."""
        noise = (noisy - clean)[start:start + length]
        candidates = self.ref_strategy(index, noisy, clean, start, length, rng)
        return self.policy.choose(noise, candidates, self.ref_len, f"{self.pairs[index][1]} ({self.reference_name})",
                                  fix="Use another `reference` strategy (e.g. noise_ref_dir), longer recordings")

    def __getitem__(self, index: int) -> dict:
        clean, noisy = self.load_pair(index)
        draws = example_draws(index) if self.train else None
        if self.num_frames is None:  # whole utterance (enhancement metrics during validation)
            start, length = 0, clean.shape[-1]
        else:
            length = self.spec.num_samples(self.num_frames)
            start = crop_start(clean.shape[-1], length, draws and draws.speech)
        choice = self.reference(index, noisy, clean, start, length, draws and draws.noise)
        clean = fit_length(clean[start:start + length], length)
        noisy = fit_length(noisy[start:start + length], length)
        example = make_example(clean, noisy, choice.reference, self.spec)
        example.update(choice.batch_fields())
        example["id"] = self.file_id(index)
        example["noise_class"] = self.noise_class_of[index]
        return example
