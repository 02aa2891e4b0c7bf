"""Bad VoiceBank-DEMAND input: structural problems stop `prepare` with one message naming what is missing
and what the official release calls it; individual bad files are skipped, counted and listed."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf

from sgmse_nc.audio import AudioError
from sgmse_nc.data.manifest import read_manifest
from sgmse_nc.data.paired import PairedFolderDataset
from sgmse_nc.data.prepare.corpus import format_summary
from sgmse_nc.data.errors import PrepareError
from sgmse_nc.data.prepare.vbdmd import prepare_vbdmd
from tests.helpers import SOURCE_RATE, make_release


@pytest.fixture
def release(tmp_path):
    return make_release(tmp_path / "download")


def prepare(src, tmp_path):
    return prepare_vbdmd(src, tmp_path / "out", progress=False)


def test_missing_audio_folder_names_the_official_zip(release, tmp_path):
    shutil.rmtree(release / "noisy_testset_wav")
    with pytest.raises(PrepareError, match="no folder named noisy_testset_wav.*noisy_testset_wav.zip"):
        prepare(release, tmp_path)
    assert not (tmp_path / "out").exists()


def test_missing_log_names_the_official_file(release, tmp_path):
    (release / "logfiles" / "log_testset.txt").unlink()
    with pytest.raises(PrepareError, match="no log file log_testset.txt.*logfiles.zip"):
        prepare(release, tmp_path)


def test_missing_source_and_empty_folder(release, tmp_path):
    with pytest.raises(PrepareError, match="nowhere: folder not found"):
        prepare_vbdmd(tmp_path / "nowhere", tmp_path / "out", progress=False)
    for wav in (release / "clean_testset_wav").iterdir():
        wav.unlink()
    with pytest.raises(PrepareError, match="clean_testset_wav: no .wav files"):
        prepare(release, tmp_path)


def test_two_copies_of_a_folder_are_ambiguous(release, tmp_path):
    shutil.copytree(release / "clean_testset_wav", release / "16k" / "clean_testset_wav")
    with pytest.raises(PrepareError, match="2 folders named clean_testset_wav"):
        prepare(release, tmp_path)


def test_mismatched_clean_and_noisy_names_stop_the_run(release, tmp_path):
    noisy = release / "noisy_trainset_28spk_wav"
    (noisy / "p250_002.wav").rename(noisy / "p250_009.wav")
    with pytest.raises(PrepareError, match=r"do not match: 1 file\(s\) only in .*: p250_002; 1 only in .*: p250_009"):
        prepare(release, tmp_path)


def test_log_problems_name_the_file_and_line(release, tmp_path):
    log = release / "logfiles" / "log_trainset_28spk.txt"
    lines = log.read_text().splitlines()
    log.write_text("\n".join(line for line in lines if not line.startswith("p250_003")) + "\n")
    with pytest.raises(PrepareError, match=r"log_trainset_28spk.txt: no line for 1 file\(s\).*p250_003"):
        prepare(release, tmp_path)
    log.write_text("\n".join(lines + ["p250_004 cafe"]) + "\n")
    with pytest.raises(PrepareError, match="log_trainset_28spk.txt, line 7: 'p250_004 cafe' is not"):
        prepare(release, tmp_path)


def test_validation_speakers_must_exist(release, tmp_path):
    with pytest.raises(PrepareError, match="validation speaker.*p999.*--valid-speakers"):
        prepare_vbdmd(release, tmp_path / "out", valid_speakers=("p226", "p999"), progress=False)


def write(path, seconds=0.6, rate=SOURCE_RATE, channels=1):
    wav = 0.1 * np.random.default_rng(0).standard_normal((int(seconds * rate), channels))
    sf.write(path, wav, rate, subtype="PCM_16")


def test_bad_files_are_skipped_counted_and_listed(release, tmp_path):
    train, valid_test = release / "noisy_trainset_28spk_wav", release / "noisy_testset_wav"
    write(train / "p250_001.wav", channels=2)                                           # stereo
    write(release / "clean_trainset_28spk_wav" / "p250_002.wav", rate=8000)             # below 16 kHz
    (train / "p226_001.wav").write_bytes(b"RIFF\x00\x00not really a wav file")          # corrupt
    (release / "clean_trainset_28spk_wav" / "p226_002.wav").write_bytes(b"")            # empty
    write(valid_test / "p232_001.wav", rate=44100)                                      # rate differs from clean
    write(valid_test / "p232_002.wav", seconds=0.55)                                    # length differs from clean
    for folder in ("clean_testset_wav", "noisy_testset_wav"):
        write(release / folder / "p257_001.wav", seconds=0.1)                           # too short

    summary = prepare(release, tmp_path)
    out = tmp_path / "out"
    assert summary["skipped"] == 7 and summary["written"] == 3
    assert summary["counts"] == {"test": 1, "train": 1, "valid": 1}
    listed = (out / "skipped.txt").read_text().splitlines()
    expected = {
        "train/p250_001": "p250_001.wav: has 2 channels",
        "train/p250_002": "p250_002.wav: sample rate 8000 Hz, below the target 16000 Hz",
        "valid/p226_001": "p226_001.wav: cannot be read as audio",
        "valid/p226_002": "p226_002.wav: cannot be read as audio",
        "test/p232_001": "sample rate 44100 Hz but",
        "test/p232_002": "must have the same length",
        "test/p257_001": "0.100 s long, at least 0.25 s",
    }
    assert len(listed) == 7
    for line in listed:
        name, reason = line.split("\t")
        assert expected[name] in reason
    for subset, kept in (("train", "p250_003"), ("valid", "p287_001"), ("test", "p257_002")):
        assert [row["id"] for row in read_manifest(out / subset / "manifest.csv")] == [kept]
        assert sorted(p.stem for p in (out / subset / "noisy").iterdir()) == [kept]
    assert "7 skipped file(s) listed in" in format_summary(summary)

    again = prepare(release, tmp_path)  # the skipped files are skipped again, nothing is rewritten
    assert (again["written"], again["kept"], again["skipped"]) == (0, 3, 7)


def test_prepared_folder_with_mismatched_names_is_refused(release, tmp_path):
    prepare(release, tmp_path)
    noisy = tmp_path / "out" / "test" / "noisy"
    (noisy / "p257_002.wav").rename(noisy / "p257_003.wav")
    with pytest.raises(AudioError, match="do not match.*p257_002.*p257_003"):
        PairedFolderDataset(tmp_path / "out", "test")


def test_log_lines_without_audio_are_reported(release, tmp_path):
    for folder in ("clean_trainset_28spk_wav", "noisy_trainset_28spk_wav"):
        (release / folder / "p250_003.wav").unlink()  # as after a partly extracted download
    summary = prepare(release, tmp_path)
    assert summary["counts"]["train"] == 2
    assert "log_trainset_28spk.txt lists 1 utterance(s) without a wav file (e.g. p250_003)" in format_summary(summary)
