"""prepare ears_wham on a fake EARS-WHAM release (sp-uhh/ears_benchmark's layout: <subset>/{clean,noisy}/<speaker>/,
<subset>.csv naming the WHAM! recording and the samples mixed in) and fake WHAM! 48 kHz recordings: the layout we
train on, at the release's 48 kHz, with references cut from the same recording outside the mixed samples."""
import csv
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from sgmse_nc.data.honesty import similarity
from sgmse_nc.data.manifest import read_manifest
from tests.helpers import REPO_ROOT

RATE = 48000
SPEAKERS = {"train": ["p001", "p002"], "valid": ["p100"], "test": ["p102"]}


def make_release(root, rng):
    """EARS-WHAM with two utterances per speaker (0.6 s) mixed from 4 s stereo WHAM! recordings."""
    src, noise_dir = root / "EARS-WHAM", root / "WHAM48kHz" / "high_res_wham" / "audio"
    noise_dir.mkdir(parents=True)
    recordings = {}
    for k in range(3):
        name = f"rec{k}"
        data = rng.standard_normal((4 * RATE, 2)) * 0.1 * (1 + np.arange(2))  # two channels, distinct levels
        sf.write(noise_dir / f"{name}.wav", data, RATE, subtype="FLOAT")
        recordings[name] = data
    mixed = {}
    for subset, speakers in SPEAKERS.items():
        rows, utt = [], 0
        for speaker in speakers:
            for _ in range(2):
                n = int(0.6 * RATE)
                t = np.arange(n) / RATE
                clean = 0.3 * np.sin(2 * np.pi * (150 + 10 * utt) * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
                name = f"rec{utt % 3}"
                start = int(rng.integers(RATE, 2 * RATE))  # the recording has room before and after
                channel = int(rng.integers(0, 2))
                noise = recordings[name][start:start + n, channel]
                snr = round(float(rng.uniform(0, 10)), 1)
                for kind, wav, file in (("clean", clean, f"{utt:05}.wav"),
                                        ("noisy", clean + noise, f"{utt:05}_{snr:.1f}dB.wav")):
                    (src / subset / kind / speaker).mkdir(parents=True, exist_ok=True)
                    sf.write(src / subset / kind / speaker / file, wav, RATE, subtype="FLOAT")
                rows.append({"id": utt, "speaker": speaker, "speech_file": f"regular_{utt}", "speech_start": 0,
                             "speech_end": -1, "noise_file": name, "noise_start": start, "noise_end": start + n,
                             "snr_dB": snr})
                mixed[(subset, f"{speaker}_{utt:05}")] = (name, start, start + n)
                utt += 1
        with open(src / f"{subset}.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return src, noise_dir, mixed


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
