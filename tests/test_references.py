"""Noise-reference strategies of PairedFolderDataset: same_utterance, same_noise_type, file."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from sgmse_nc.audio import AudioError, read_audio, write_audio
from sgmse_nc.data.manifest import ManifestError, write_manifest
from sgmse_nc.data.paired import PairedFolderDataset
from sgmse_nc.data.references import SameNoiseType

SR = 16000
FRAMES = 32                       # crop of 31 * 128 = 3968 samples
REF_LEN = 4000                    # ref_seconds 0.25
LABELS = {"u0": "cafe", "u1": "cafe", "u2": "cafe", "u3": "bus", "u4": "bus", "u5": "street"}


@pytest.fixture
def root(tmp_path):
    """A prepared-layout subset: 1 s utterances whose noise is unique white noise (so stretches can be located)."""
    rng = np.random.default_rng(0)
    for utt in LABELS:
        clean = torch.from_numpy(0.1 * np.sin(np.arange(SR) * 0.05)).float()
        noise = torch.from_numpy(0.05 * rng.standard_normal(SR)).float()
        write_audio(tmp_path / "test" / "clean" / f"{utt}.wav", clean, SR, subtype="FLOAT")
        write_audio(tmp_path / "test" / "noisy" / f"{utt}.wav", clean + noise, SR, subtype="FLOAT")
        write_audio(tmp_path / "test" / "noise_ref" / f"{utt}.wav", noise[:SR // 2] * 3, SR, subtype="FLOAT")
    write_manifest(tmp_path / "test" / "manifest.csv",
                   [{"id": utt, "speaker": "p000", "noise_type": label, "snr": 5.0} for utt, label in LABELS.items()],
                   ("id", "speaker", "noise_type", "snr"))
    return tmp_path


def dataset(root, **kwargs):
    return PairedFolderDataset(root, "test", num_frames=FRAMES, ref_seconds=REF_LEN / SR, **kwargs)


def locate(stretch: torch.Tensor, wav: torch.Tensor) -> list[int]:
    """Every start at which `stretch` appears in `wav` exactly."""
    starts = torch.nonzero(wav[: wav.numel() - stretch.numel() + 1] == stretch[0]).flatten().tolist()
    return [s for s in starts if torch.equal(wav[s:s + stretch.numel()], stretch)]


def test_same_utterance_is_outside_the_crop_and_fixed_for_eval(root):
    ds = dataset(root)
    noise = ds.load_noise(0)
    length = ds.spec.num_samples(FRAMES)
    for seed in range(20):
        start = int(np.random.default_rng(seed).integers(0, SR - length))
        ref = ds.reference(0, noise, start, length, np.random.default_rng(seed))
        assert ref.shape == (REF_LEN,)
        (at,) = locate(ref, noise)
        assert at + REF_LEN <= start or at >= start + length  # never overlaps the mixed stretch
    first, second = ds[2], ds[2]
    assert torch.equal(first["r_wav"], second["r_wav"]) and first["r_wav"].shape == (REF_LEN,)


def test_same_noise_type_uses_another_utterance_with_that_label(root):
    ds = dataset(root, reference="same_noise_type", train=True)
    noises = [ds.load_noise(i) for i in range(len(ds))]
    sources = set()
    for seed in range(30):
        ref = ds.reference(0, noises[0], 0, 100, np.random.default_rng(seed))
        found = [j for j, noise in enumerate(noises) if locate(ref, noise)]
        assert len(found) == 1 and found[0] in (1, 2)  # u1 or u2: cafe, never u0 itself
        sources.add(found[0])
    assert sources == {1, 2}  # training draws vary
    assert ds[3]["r_wav"].shape == (REF_LEN,)


def test_same_noise_type_eval_is_seeded(root):
    ds = dataset(root, reference="same_noise_type")
    noise = ds.load_noise(3)
    ref = ds.reference(3, noise, 0, 100, None)
    assert torch.equal(ref, ds.reference(3, noise, 0, 100, None))
    assert locate(ref, ds.load_noise(4))  # bus: the only other bus utterance
    assert torch.equal(ds[0]["r_wav"], ds[0]["r_wav"])
    refs = {seed: dataset(root, reference="same_noise_type", seed=seed).reference(0, noise, 0, 100, None)
            for seed in range(6)}
    assert len({tuple(r[:5].tolist()) for r in refs.values()}) > 1  # the seed changes the choice


def test_single_utterance_label_falls_back_once(root, caplog):
    with caplog.at_level(logging.WARNING):
        ds = dataset(root, reference="same_noise_type")
    assert ds.ref_strategy.fallback_ids == ["u5"]
    assert sum("single utterance (u5)" in r.message for r in caplog.records) == 1
    noise = ds.load_noise(5)
    ref = ds.reference(5, noise, 0, 4000, None)
    (at,) = locate(ref, noise)
    assert at >= 4000  # its own noise, outside the crop


def test_file_strategy_reads_the_named_file(root):
    ds = dataset(root, reference="file", train=True)  # ref_dir defaults to <root>/test/noise_ref
    given = read_audio(root / "test" / "noise_ref" / "u1.wav")
    starts = {locate(ds.reference(1, ds.load_noise(1), 0, 100, np.random.default_rng(seed)), given)[0]
              for seed in range(5)}
    assert len(starts) > 1  # training draws a random stretch of the given file
    ev = dataset(root, reference="file", ref_dir=root / "test" / "noise_ref")
    assert torch.equal(ev.reference(1, None, 0, 0, None), ev.reference(1, None, 0, 0, None))
    assert ev[1]["r"].shape == (1, 256, REF_LEN // 128 + 1)


def test_file_strategy_loops_a_short_file(root, tmp_path):
    short = tmp_path / "short"
    for utt in LABELS:
        write_audio(short / f"{utt}.wav", torch.linspace(0.1, 0.2, 1000), SR, subtype="FLOAT")
    ref = dataset(root, reference="file", ref_dir=short).reference(0, None, 0, 0, None)
    assert ref.shape == (REF_LEN,) and torch.equal(ref[:1000], ref[1000:2000])


def test_reference_errors_are_clear(root, tmp_path):
    with pytest.raises(ValueError, match="'nearby' is not a strategy; choose one of same_utterance"):
        dataset(root, reference="nearby")
    (root / "test" / "noise_ref" / "u4.wav").unlink()
    with pytest.raises(AudioError, match=r"no reference file for 1 utterance\(s\) \(e.g. u4.wav\)"):
        dataset(root, reference="file")
    with pytest.raises(AudioError, match="elsewhere: reference folder not found"):
        dataset(root, reference="file", ref_dir=tmp_path / "elsewhere")
    with pytest.raises(ManifestError, match="other.csv: manifest not found.*sgmse_nc.data.prepare"):
        dataset(root, reference="same_noise_type", manifest=tmp_path / "other.csv")
    write_manifest(tmp_path / "partial.csv", [{"id": "u0", "noise_type": "cafe"}])
    with pytest.raises(ManifestError, match=r"no row for 5 file\(s\).*u1, u2"):
        dataset(root, reference="same_noise_type", manifest=tmp_path / "partial.csv")
    write_manifest(tmp_path / "nolabel.csv", [{"id": u} for u in LABELS])
    with pytest.raises(ManifestError, match="missing column\\(s\\) noise_type"):
        dataset(root, reference="same_noise_type", manifest=tmp_path / "nolabel.csv")
    (tmp_path / "badsnr.csv").write_text("id,noise_type,snr\nu0,cafe,loud\n")
    with pytest.raises(ManifestError, match="line 2: column 'snr' is 'loud'"):
        dataset(root, reference="same_noise_type", manifest=tmp_path / "badsnr.csv")


def test_strategy_without_dataset(root):
    """SameNoiseType works on any id list and loader (the mixing datasets can reuse it)."""
    noises = {i: torch.full((50,), float(i)) for i in range(4)}
    strategy = SameNoiseType(["u0", "u1", "u3", "u4"], root / "test" / "manifest.csv", noises.__getitem__, 80)
    ref = strategy(2, noises[2], 0, 0, None)
    assert ref.shape == (80,) and torch.all(ref == 3.0)  # u3 (bus) -> item 3 = u4, looped to 80 samples
