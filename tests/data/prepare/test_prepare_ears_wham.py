"""prepare ears_wham on a fake EARS-WHAM release (sp-uhh/ears_benchmark's layout: <subset>/{clean,noisy}/<speaker>/,
<subset>.csv naming the WHAM! recording and the samples mixed in) and fake WHAM! 48 kHz recordings: the layout we
train on, at the release's 48 kHz, with references cut from the same recording outside the mixed samples."""
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from sgmse_nc.data.honesty import similarity
from sgmse_nc.data.manifest import read_manifest
from tests.helpers import EARS_SPEAKERS as SPEAKERS, REPO_ROOT, make_ears_wham_release as make_release

RATE = 48000


def prepare(*args, expect=0):
    out = subprocess.run([sys.executable, "-m", "sgmse_nc.data.prepare", "ears_wham", *map(str, args),
                          "--no-progress"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert out.returncode == expect, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def test_prepare_ears_wham_layout_and_honest_references(tmp_path):
    src, noise_dir, mixed = make_release(tmp_path, np.random.default_rng(0))
    dst = tmp_path / "ears_wham"
    prepare("--src", src, "--noise", noise_dir, "--dst", dst)
    for subset, speakers in SPEAKERS.items():
        rows = read_manifest(dst / subset / "manifest.csv")
        assert len(rows) == 2 * len(speakers)
        for row in rows:
            clean, noisy, ref = (dst / subset / kind / f"{row['id']}.wav" for kind in ("clean", "noisy", "noise_ref"))
            assert {sf.info(p).samplerate for p in (clean, noisy, ref)} == {RATE}
            name, start, end = mixed[(subset, row["id"])]
            assert (row["noise_file"], int(row["noise_start"]), int(row["noise_end"])) == (name, start, end)
            assert row["reference_relation"] == "same_recording_other_stretch" and row["reference_file"] == name
            offset, length = int(row["reference_offset"]), sf.info(ref).frames
            assert offset + length <= start or offset >= end  # outside the samples mixed into this utterance
            assert length == 4 * RATE - end if offset >= end else length <= start
            noise = sf.read(noisy)[0] - sf.read(clean)[0]
            assert not similarity(sf.read(ref)[0], noise).is_copy()
    assert "ears_wham" in (dst / "DONE.json").read_text()
    before = {p: p.stat().st_mtime_ns for p in dst.rglob("*.wav")}
    prepare("--src", src, "--noise", noise_dir, "--dst", dst)  # a rerun keeps every file
    assert {p: p.stat().st_mtime_ns for p in dst.rglob("*.wav")} == before


def test_missing_recording_and_release_csv_are_named(tmp_path):
    src, noise_dir, _ = make_release(tmp_path, np.random.default_rng(1))
    (noise_dir / "rec1.wav").unlink()
    out = prepare("--src", src, "--noise", noise_dir, "--dst", tmp_path / "a", expect=2)
    assert "rec1.wav" in out.stderr and "--noise" in out.stderr
    (src / "valid.csv").unlink()
    out = prepare("--src", src, "--noise", noise_dir, "--dst", tmp_path / "b", expect=2)
    assert "valid.csv" in out.stderr and "generate_ears_wham.py" in out.stderr


@pytest.mark.slow
def test_training_reads_the_prepared_corpus_at_48k(tmp_path):
    """The data config ears_wham at spec=48k: a tiny model trains two steps on the prepared corpus."""
    src, noise_dir, _ = make_release(tmp_path, np.random.default_rng(2))
    prepare("--src", src, "--noise", noise_dir, "--dst", tmp_path / "data" / "ears_wham")
    out = subprocess.run([sys.executable, "train.py", "experiment=sgmse_48k", "scale=none", "trainer=cpu",
                          "backbone=ncsnpp_tiny", f"paths.data_dir={tmp_path / 'data'}",
                          f"hydra.run.dir={tmp_path / 'run'}", "data.batch_size=2", "data.num_workers=0",
                          "data.num_eval_files=0", "data.train.num_frames=16", "trainer.max_steps=2",
                          "trainer.max_epochs=1", "logger=csv", "callbacks=default"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
