"""`python -m sgmse_nc.data.prepare vbdmd` on a synthetic stand-in of the official 48 kHz release."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from sgmse_nc.audio import read_audio, resample_audio
from sgmse_nc.data.manifest import read_manifest
from sgmse_nc.data.prepare.corpus import resampled_length
from sgmse_nc.data.errors import PrepareError
from sgmse_nc.data.prepare.cli import main
from sgmse_nc.data.prepare.vbdmd import prepare_vbdmd
from sgmse_nc.io import temp_name
from tests.helpers import REPO_ROOT, SOURCE_RATE, TRAIN_LOG, TEST_LOG, make_release

CONF_DIR = REPO_ROOT / "conf"


def snapshot(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def release(tmp_path):
    return make_release(tmp_path / "download")


@pytest.fixture
def prepared(release, tmp_path):
    dst = tmp_path / "vbdmd"
    return dst, prepare_vbdmd(release, dst, progress=False)


def test_layout_rates_split_and_manifest(release, prepared):
    dst, summary = prepared
    ids = {subset: sorted(p.stem for p in (dst / subset / "clean").glob("*.wav"))
           for subset in ("train", "valid", "test")}
    assert ids["valid"] == ["p226_001", "p226_002", "p287_001"]
    assert ids["train"] == ["p250_001", "p250_002", "p250_003"]
    assert ids["test"] == sorted(TEST_LOG)
    assert summary["counts"] == {"test": 4, "train": 3, "valid": 3}
    assert summary["written"] == 10 and summary["skipped"] == 0
    assert summary["subsets"]["test"]["noise_types"] == {"bus": 2, "cafe": 2}
    assert summary["subsets"]["valid"]["speakers"] == {"p226": 2, "p287": 1}

    for subset in ids:
        for kind in ("clean", "noisy"):
            assert sorted(p.stem for p in (dst / subset / kind).glob("*.wav")) == ids[subset]
        rows = read_manifest(dst / subset / "manifest.csv", required=("id", "speaker", "noise_type", "snr"))
        labels = {**TRAIN_LOG, **TEST_LOG}
        assert [r["id"] for r in rows] == ids[subset]
        assert all((r["noise_type"], r["snr"]) == labels[r["id"]] and r["speaker"] == r["id"][:4] for r in rows)

    out = dst / "test" / "noisy" / "p257_001.wav"
    source = release / "noisy_testset_wav" / "p257_001.wav"
    info = sf.info(str(out))
    assert (info.samplerate, info.channels) == (16000, 1)
    assert info.frames == resampled_length(sf.info(str(source)).frames, SOURCE_RATE, 16000)
    expected = resample_audio(read_audio(source, None), SOURCE_RATE, 16000)
    assert torch.allclose(read_audio(out), expected, atol=1e-3)  # PCM-16 rounding only

    marker = json.loads((dst / "DONE.json").read_text())
    assert marker["dataset"] == "vbdmd" and marker["counts"] == summary["counts"]
    assert not (dst / ".in_progress.json").exists() and not (dst / "skipped.txt").exists()


def test_second_run_writes_nothing(release, prepared):
    dst, _ = prepared
    before = snapshot(dst)
    summary = prepare_vbdmd(release, dst, progress=False)
    assert summary["written"] == 0 and summary["kept"] == 10
    assert snapshot(dst) == before


def test_resume_rewrites_only_what_is_missing(release, prepared):
    dst, _ = prepared
    (dst / "train" / "noisy" / "p250_002.wav").unlink()
    (dst / "DONE.json").rename(dst / ".in_progress.json")  # as if the first run had been interrupted
    leftover = temp_name(dst / "valid" / "clean" / "p226_001.wav")  # half-written file of a killed run
    leftover.write_bytes(b"RIFF")
    summary = prepare_vbdmd(release, dst, progress=False)
    assert summary["written"] == 1 and summary["kept"] == 9
    assert (dst / "train" / "noisy" / "p250_002.wav").is_file() and not leftover.exists()
    assert (dst / "DONE.json").is_file() and not (dst / ".in_progress.json").exists()


def test_refuses_a_destination_holding_another_dataset(release, prepared, tmp_path):
    dst, _ = prepared
    other = make_release(tmp_path / "other")
    (other / "logfiles" / "log_testset.txt").write_text(
        "".join(f"{u} living {snr:.6e}\n" for u, (_, snr) in TEST_LOG.items()))
    with pytest.raises(PrepareError, match="different dataset.*source files differ"):
        prepare_vbdmd(other, dst, progress=False)
    with pytest.raises(PrepareError, match="valid_speakers"):
        prepare_vbdmd(release, dst, valid_speakers=("p226",), progress=False)

    foreign = tmp_path / "foreign"
    (foreign / "train" / "clean").mkdir(parents=True)
    (foreign / "train" / "clean" / "x001.wav").write_bytes(b"")
    with pytest.raises(PrepareError, match="not part of this vbdmd preparation: train/clean/x001.wav"):
        prepare_vbdmd(release, foreign, progress=False)
    with pytest.raises(PrepareError, match="would hold the source"):
        prepare_vbdmd(release, release, progress=False)


def test_tolerant_layout_nested_folders_without_wav_suffix(tmp_path):
    src = make_release(tmp_path / "download", clean_train="DS_10283_2791/clean_trainset_28spk",
                       noisy_train="DS_10283_2791/noisy_trainset_28spk_wav", clean_test="test/Clean_Testset_Wav",
                       noisy_test="test/noisy_testset_wav", log_dir="DS_10283_2791/logs/logfiles", suffix=".WAV")
    summary = prepare_vbdmd(src, tmp_path / "out", progress=False)
    assert summary["counts"] == {"test": 4, "train": 3, "valid": 3}
    assert (tmp_path / "out" / "test" / "clean" / "p232_001.wav").is_file()


def test_cli_prints_summary_and_reports_errors(release, tmp_path, capsys):
    assert main(["vbdmd", "--src", str(release), "--dst", str(tmp_path / "out"), "--no-progress", "--jobs", "2"]) == 0
    out = capsys.readouterr().out
    assert "10 pair(s) written" in out and "valid      3 files" in out and "speakers (2): p226 2, p287 1" in out
    assert "bus 2, cafe 2" in out and "2.5 1, 7.5 1, 12.5 1, 17.5 1" in out
    assert main(["vbdmd", "--src", str(tmp_path / "nowhere"), "--dst", str(tmp_path / "out2")]) == 2
    assert "nowhere: folder not found" in capsys.readouterr().err


def test_data_config_builds_the_datamodule(prepared, tmp_path):
    dst, _ = prepared
    cfg = OmegaConf.create({
        "paths": {"data_dir": str(dst.parent)}, "seed": 0,
        "spec": {"_target_": "sgmse_nc.spec.Spectrogram", "n_fft": 510, "hop_length": 128, "alpha": 0.5, "beta": 0.15},
        "data": OmegaConf.load(CONF_DIR / "data" / "vbdmd.yaml"),
    })
    assert cfg.data.batch_size == 8 and cfg.data.num_eval_files == 20 and cfg.data.train.num_frames == 256
    for subset in ("train", "valid", "test"):
        cfg.data[subset].reference = "same_noise_type"
    data = instantiate(OmegaConf.to_container(cfg.data, resolve=True))
    assert [len(d) for d in (data.train_set, data.valid_set, data.test_set)] == [3, 3, 4]
    item = data.test_set[0]
    assert item["id"] == "p232_001" and item["x"].shape == (1, 256, 256) and item["r_wav"].shape == (4000,)


def test_valid_and_test_get_honest_noise_references(prepared):
    """valid/ and test/ get noise_ref/<id>.wav: the noise of ANOTHER utterance with the same label, recorded in
    the manifest and below the near-copy threshold against the utterance's own noise."""
    from sgmse_nc.data.honesty import similarity

    dst, _ = prepared
    assert not (dst / "train" / "noise_ref").exists()
    for subset in ("valid", "test"):
        rows = read_manifest(dst / subset / "manifest.csv")
        label = {(subset_, r["id"]): r["noise_type"] for subset_ in ("train", "valid", "test")
                 for r in read_manifest(dst / subset_ / "manifest.csv")}
        for row in rows:
            own = read_audio(dst / subset / "noisy" / f"{row['id']}.wav") - read_audio(dst / subset / "clean" / f"{row['id']}.wav")
            ref = read_audio(dst / subset / "noise_ref" / f"{row['id']}.wav")
            source_subset, source_id = row["reference_file"].split("/")
            assert source_id != row["id"] and label[(source_subset, source_id)] == row["noise_type"]
            assert row["reference_relation"] == "other_utterance_same_label"
            assert float(row["reference_max_xcorr"]) == pytest.approx(similarity(ref, own).whitened, abs=1e-3)
            assert float(row["reference_max_xcorr"]) < 0.5
            partner = (read_audio(dst / source_subset / "noisy" / f"{source_id}.wav")
                       - read_audio(dst / source_subset / "clean" / f"{source_id}.wav"))
            assert torch.allclose(ref, partner, atol=1e-4)  # the partner's noise (PCM-16 rounding)
    # the prepared set serves the default valid/test strategy of conf/data/vbdmd.yaml at once
    from sgmse_nc.data.paired import PairedFolderDataset
    example = PairedFolderDataset(dst, "test", num_frames=None, reference="noise_ref_dir")[0]
    assert example["ref_xcorr"] < 0.5 and not example["ref_null"]
