"""Noise-class labels reach the batch (`noise_class`, "" = unknown, the head's -1) from a manifest column and
from the pools, and each dataset lists the classes it can give (`noise_classes`: the head's vocabulary)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from sgmse_nc.audio import write_audio
from sgmse_nc.data.augment import ConcatSource, EventSource, MixSource, StretchSource, SyntheticSource, VaryingGainSource
from sgmse_nc.data.manifest import write_manifest
from sgmse_nc.data.mixing import MixingDataset
from sgmse_nc.data.paired import PairedFolderDataset
from sgmse_nc.diffusion.noise_class import NoiseClassHead
from tests.data.test_mixing import FRAMES, make_corpus

SR = 16000


def paired_subset(root, labels: dict[str, str], column: str):
    """A prepared-layout subset of 1 s utterances with noise-only takes and a manifest whose `column` holds
    the labels ("" = a row without a label; None = no row at all)."""
    rng = np.random.default_rng(0)
    for utt in labels:
        clean = torch.from_numpy(0.1 * np.sin(np.arange(SR) * 0.05)).float()
        write_audio(root / "train" / "clean" / f"{utt}.wav", clean, SR, subtype="FLOAT")
        write_audio(root / "train" / "noisy" / f"{utt}.wav", clean + 0.05 * torch.randn(SR), SR, subtype="FLOAT")
        write_audio(root / "train" / "noise_ref" / f"{utt}.wav", torch.from_numpy(
            0.05 * rng.standard_normal(SR // 2)).float(), SR, subtype="FLOAT")
    write_manifest(root / "train" / "manifest.csv",
                   [{"id": utt, "speaker": "p000", column: label} for utt, label in labels.items() if label is not None],
                   ("id", "speaker", column))
    return root


@pytest.mark.parametrize("column", ["noise_type", "category"])  # VoiceBank-DEMAND's / ESC-50's column name
def test_manifest_labels_reach_the_batch_and_unknown_ones_become_minus_one(tmp_path, column):
    labels = {"u0": "cafe", "u1": "bus", "u2": "", "u3": None}  # u2: empty cell, u3: no manifest row
    data = PairedFolderDataset(paired_subset(tmp_path, labels, column), "train", num_frames=16, ref_seconds=0.1)
    assert data.noise_classes == ["bus", "cafe"]
    batch = next(iter(DataLoader(data, batch_size=4)))
    assert batch["noise_class"] == ["cafe", "bus", "", ""]
    head = NoiseClassHead(4, data.noise_classes)
    assert head.targets(batch["noise_class"], 4).tolist() == [1, 0, -1, -1]


def test_a_subset_without_a_manifest_has_no_labels(tmp_path):
    root = paired_subset(tmp_path, {"u0": "cafe", "u1": "bus"}, "noise_type")
    (root / "train" / "manifest.csv").unlink()
    data = PairedFolderDataset(root, "train", num_frames=16, ref_seconds=0.1)
    assert data.noise_classes == [] and data[0]["noise_class"] == ""


def test_pool_labels_reach_the_batch_and_an_unlabelled_pool_gives_unknown(tmp_path):
    corpus = make_corpus(tmp_path)  # noise/cafe/rec.wav, noise/street/rec.wav
    labelled = MixingDataset(corpus / "speech", [{"root": corpus / "noise", "labels": "subfolder"}],
                             num_frames=FRAMES, length=6)
    assert labelled.noise_classes == ["cafe", "street"]
    batch = next(iter(DataLoader(labelled, batch_size=6)))
    # every example names the class of the recording it was mixed with
    assert set(batch["noise_class"]) <= {"cafe", "street"} and len(batch["noise_class"]) == 6
    for i in range(6):
        example = labelled[i]
        assert example["noise_class"] in ("cafe", "street")
    unlabelled = MixingDataset(corpus / "speech", [corpus / "noise"], num_frames=FRAMES, length=2)  # no labels
    assert unlabelled.noise_classes == []
    batch = next(iter(DataLoader(unlabelled, batch_size=2)))
    assert batch["noise_class"] == ["", ""]
    assert NoiseClassHead(4, labelled.noise_classes).targets(batch["noise_class"], 2).tolist() == [-1, -1]


def test_augmentation_names_its_own_noises_and_a_noise_of_two_classes_is_unknown(tmp_path):
    corpus = make_corpus(tmp_path)
    pools = [{"root": corpus / "noise", "labels": "subfolder"}]
    white = MixingDataset(corpus / "speech", pools, num_frames=FRAMES, length=2, augment={"p_white": 1.0})
    assert white.noise_classes == ["cafe", "street", "white"]
    assert [white[i]["noise_class"] for i in range(2)] == ["white", "white"]
    rng = np.random.default_rng(0)
    one, other = SyntheticSource("white"), SyntheticSource("pink")
    for source, expected in ((MixSource(one, one), "white"), (MixSource(one, other), None),
                             (ConcatSource([one, one]), "white"), (ConcatSource([one, other]), None),
                             (StretchSource(other), "pink"), (VaryingGainSource(other), "pink"),
                             (EventSource(one, other), None), (EventSource(one, one), "white")):
        assert source.draw(4000, 2000, rng).noise_class == expected, type(source).__name__
