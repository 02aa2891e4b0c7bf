"""Noise-reference strategies of PairedFolderDataset (noise_ref_dir, same_noise_type, from_noisy_pauses, none,
oracle_same_utterance) under the reference policy."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from sgmse_nc.audio import AudioError, read_audio, write_audio
from sgmse_nc.data.manifest import ManifestError, write_manifest
from sgmse_nc.data.paired import PairedFolderDataset
from sgmse_nc.data.errors import HonestyError
from sgmse_nc.data.honesty import similarity
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
        other = torch.from_numpy(0.05 * rng.standard_normal(SR // 2)).float()  # an independent noise-only take
        write_audio(tmp_path / "test" / "noise_ref" / f"{utt}.wav", other, SR, subtype="FLOAT")
    write_manifest(tmp_path / "test" / "manifest.csv",
                   [{"id": utt, "speaker": "p000", "noise_type": label, "snr": 5.0} for utt, label in LABELS.items()],
                   ("id", "speaker", "noise_type", "snr"))
    return tmp_path


def pair(ds, index):
    clean, noisy = ds.load_pair(index)
    return noisy, clean


def dataset(root, **kwargs):
    return PairedFolderDataset(root, "test", **{"num_frames": FRAMES, "ref_seconds": REF_LEN / SR, **kwargs})


def locate(stretch: torch.Tensor, wav: torch.Tensor) -> list[int]:
    """Every start at which `stretch` appears in `wav` exactly."""
    starts = torch.nonzero(wav[: wav.numel() - stretch.numel() + 1] == stretch[0]).flatten().tolist()
    return [s for s in starts if torch.equal(wav[s:s + stretch.numel()], stretch)]


def test_oracle_same_utterance_is_outside_the_crop_and_fixed_for_eval(root, caplog):
    with caplog.at_level(logging.WARNING):
        ds = dataset(root, reference="oracle_same_utterance")
    assert any("ORACLE" in r.message for r in caplog.records)  # logged as what it is
    noisy, clean = pair(ds, 0)
    noise = noisy - clean
    length = ds.spec.num_samples(FRAMES)
    for seed in range(20):
        start = int(np.random.default_rng(seed).integers(0, SR - length))
        choice = ds.reference(0, noisy, clean, start, length, np.random.default_rng(seed))
        assert choice.reference.shape == (REF_LEN,) and choice.relation == "oracle_same_utterance"
        piece = REF_LEN // 4  # a side shorter than the reference is looped: its first quarter is contiguous
        (at,) = locate(choice.reference[:piece], noise)
        assert at + piece <= start or at >= start + length  # never overlaps the mixed stretch
    first, second = ds[2], ds[2]
    assert torch.equal(first["r_wav"], second["r_wav"]) and first["r_wav"].shape == (REF_LEN,)


def test_whole_utterance_never_gets_the_mixed_noise(root):
    """The old fallback: a crop covering the whole utterance got the whole recording (the mixed noise) as
    reference. Now every strategy's whole-utterance reference is below the threshold, or none is given."""
    for reference in ("noise_ref_dir", "same_noise_type"):
        ds = dataset(root, reference=reference, num_frames=None, on_failure="null")
        for i in range(len(ds)):
            example = ds[i]
            noisy, clean = pair(ds, i)
            if not example["ref_null"]:
                assert similarity(example["r_wav"] * example["norm"], noisy - clean).whitened < 0.5
                assert example["ref_xcorr"] < 0.5
    oracle = dataset(root, reference="oracle_same_utterance", num_frames=None)
    with pytest.raises(HonestyError, match="no honest noise reference.*threshold 0.5"):
        oracle[0]  # nothing lies outside a whole-utterance crop: a clear error, never the mixed noise
    oracle = dataset(root, reference="oracle_same_utterance", num_frames=None, on_failure="null")
    example = oracle[0]
    assert example["ref_null"] and torch.all(example["r_wav"] == 0)


def test_a_near_copy_is_rejected_and_counted(root, tmp_path):
    """A noise_ref file that copies the mixed noise (any gain, any lag) is refused; the batch says so."""
    copies = tmp_path / "copies"
    for k, utt in enumerate(LABELS):
        ds = dataset(root)
        noisy, clean = pair(ds, k)
        write_audio(copies / f"{utt}.wav", -3.0 * (noisy - clean)[1000:9000], SR, subtype="FLOAT")
    ds = dataset(root, ref_dir=copies, num_frames=None, on_failure="null")
    example = ds[1]
    assert example["ref_null"] and example["ref_rejected_copy"] == 4
    with pytest.raises(HonestyError, match="4 were near-copies"):
        dataset(root, ref_dir=copies, num_frames=None)[1]


def test_same_noise_type_uses_another_utterance_with_that_label(root):
    ds = dataset(root, reference="same_noise_type", train=True)
    noises = [ds.load_noise(i) for i in range(len(ds))]
    noisy, clean = pair(ds, 0)
    sources = set()
    for seed in range(30):
        choice = ds.reference(0, noisy, clean, 0, 100, np.random.default_rng(seed))
        found = [j for j, noise in enumerate(noises) if locate(choice.reference, noise)]
        assert len(found) == 1 and found[0] in (1, 2)  # u1 or u2: cafe, never u0 itself
        assert choice.source == f"u{found[0]}" and choice.relation == "other_utterance_same_label"
        sources.add(found[0])
    assert sources == {1, 2}  # training draws vary
    assert ds[3]["r_wav"].shape == (REF_LEN,)


def test_same_noise_type_never_picks_the_same_utterance(root):
    ds = dataset(root, reference="same_noise_type")
    for index in range(5):  # u5 is alone with its label
        for seed in range(10):
            assert index not in ds.ref_strategy.others(index, np.random.default_rng(seed))
    assert ds.ref_strategy.others(5, np.random.default_rng(0)) == []


def test_same_noise_type_eval_is_seeded(root):
    ds = dataset(root, reference="same_noise_type")
    noisy, clean = pair(ds, 3)
    ref = ds.reference(3, noisy, clean, 0, 100, None).reference
    assert torch.equal(ref, ds.reference(3, noisy, clean, 0, 100, None).reference)
    assert locate(ref, ds.load_noise(4))  # bus: the only other bus utterance
    assert torch.equal(ds[0]["r_wav"], ds[0]["r_wav"])
    noisy, clean = pair(ds, 0)
    refs = {seed: dataset(root, reference="same_noise_type", seed=seed).reference(0, noisy, clean, 0, 100, None)
            for seed in range(6)}
    assert len({tuple(c.reference[:5].tolist()) for c in refs.values()}) > 1  # the seed changes the choice


def test_single_utterance_label_has_no_silent_fallback(root, caplog):
    with caplog.at_level(logging.WARNING):
        ds = dataset(root, reference="same_noise_type")
    assert sum("single utterance (u5)" in r.message for r in caplog.records) == 1
    with pytest.raises(HonestyError, match="u5.wav.*no honest noise reference"):
        ds[5]
    example = dataset(root, reference="same_noise_type", on_failure="null")[5]
    assert example["ref_null"] and torch.all(example["r_wav"] == 0)


def test_noise_ref_dir_reads_the_named_file(root):
    ds = dataset(root, reference="noise_ref_dir", train=True)  # ref_dir defaults to <root>/test/noise_ref
    given = read_audio(root / "test" / "noise_ref" / "u1.wav")
    noisy, clean = pair(ds, 1)
    starts = {locate(ds.reference(1, noisy, clean, 0, 100, np.random.default_rng(seed)).reference, given)[0]
              for seed in range(5)}
    assert len(starts) > 1  # training draws a random stretch of the given file
    ev = dataset(root, reference="noise_ref_dir", ref_dir=root / "test" / "noise_ref")
    assert torch.equal(ev.reference(1, noisy, clean, 0, 100, None).reference,
                       ev.reference(1, noisy, clean, 0, 100, None).reference)
    assert ev[1]["r"].shape == (1, 256, REF_LEN // 128 + 1)
    assert ev[1]["ref_xcorr"] < 0.5 and ev[1]["ref_rejected_copy"] == 0


def test_noise_ref_dir_loops_a_short_file(root, tmp_path):
    short = tmp_path / "short"
    rng = np.random.default_rng(5)
    for utt in LABELS:
        write_audio(short / f"{utt}.wav", 0.05 * rng.standard_normal(1000), SR, subtype="FLOAT")
    ds = dataset(root, ref_dir=short)
    noisy, clean = pair(ds, 0)
    ref = ds.reference(0, noisy, clean, 0, 100, None).reference
    assert ref.shape == (REF_LEN,) and torch.equal(ref[:1000], ref[1000:2000])


def test_none_gives_the_null_condition(root):
    example = dataset(root, reference="none", on_failure="null")[0]
    assert example["ref_null"] and torch.all(example["r_wav"] == 0)


def test_reference_errors_are_clear(root, tmp_path):
    with pytest.raises(ValueError, match="'nearby' is not a strategy; choose one of noise_ref_dir"):
        dataset(root, reference="nearby")
    with pytest.raises(ValueError, match="'same_utterance' is now called 'oracle_same_utterance'.*clean signal"):
        dataset(root, reference="same_utterance")
    (root / "test" / "noise_ref" / "u4.wav").unlink()
    with pytest.raises(AudioError, match=r"no reference file for 1 utterance\(s\) \(e.g. u4.wav\)"):
        dataset(root, reference="noise_ref_dir")
    with pytest.raises(AudioError, match="elsewhere: reference folder not found"):
        dataset(root, reference="noise_ref_dir", ref_dir=tmp_path / "elsewhere")
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
    with pytest.raises(ValueError, match="on_failure must be one of error, null"):
        dataset(root, reference="same_noise_type", on_failure="fallback")


def test_strategy_without_dataset(root):
    """SameNoiseType works on any id list and loader (the mixing datasets can reuse it)."""
    noises = {i: torch.full((50,), float(i)) for i in range(4)}
    strategy = SameNoiseType(["u0", "u1", "u3", "u4"], root / "test" / "manifest.csv", noises.__getitem__, 80)
    (candidate, *_) = strategy(2, noises[2], torch.zeros(50), 0, 0, None)
    assert candidate.reference.shape == (80,) and torch.all(candidate.reference == 3.0)  # u3 (bus) -> u4, looped
