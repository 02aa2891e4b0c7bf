"""Test-set builders (ESC-50 OOD, non-stationary) on synthetic stand-ins of their input layouts."""
from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from sgmse_nc.audio import read_audio, write_audio
from sgmse_nc.data.prepare.cli import main as prepare_main
from sgmse_nc.data.errors import BuildError, HonestyError
from sgmse_nc.data.prepare.esc50 import build_esc50
from sgmse_nc.data.prepare.nonstationary import build_nonstationary
from sgmse_nc.data.manifest import read_manifest
from sgmse_nc.data.activity import active_mask
from sgmse_nc.data.paired import PairedFolderDataset
from sgmse_nc.data.synthetic import speech_like
from sgmse_nc.io import write_text_atomic
from tests.helpers import ESC50_CATEGORIES as CATEGORIES, REPO_ROOT, make_esc50

REPO = REPO_ROOT

SR = 16000
@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    for k in range(4):
        write_audio(root / "clean" / f"p{k}_00{k}.wav", speech_like(int(rng.uniform(1.5, 2.5) * SR), rng), SR)
    make_esc50(root / "ESC-50-master", rng)
    for label in ("kitchen", "street"):  # a DEMAND-like pool: one long recording per environment
        write_audio(root / "demand" / label / "ch01.wav", 0.05 * rng.standard_normal(8 * SR), SR)
    return root


def digest(folder) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "DONE.json"}


def mtimes(folder) -> dict:
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def check_sets(out, snrs, expected_items, ref_len=SR, threshold_db=-40.0):
    """Every SNR folder: paired layout, manifest achieved SNR = target = SNR recomputed from the files over
    the active noise, and a reference that is not a piece of the mixed noise."""
    for snr in snrs:
        rows = read_manifest(out / f"snr_{snr:g}" / "manifest.csv")
        assert len(rows) == expected_items and all(r["snr"] == snr for r in rows)
        assert len(PairedFolderDataset(out, f"snr_{snr:g}", num_frames=None)) == expected_items
        for row in rows:
            clean = read_audio(out / f"snr_{snr:g}" / "clean" / f"{row['id']}.wav")
            noisy = read_audio(out / f"snr_{snr:g}" / "noisy" / f"{row['id']}.wav")
            ref = read_audio(out / f"snr_{snr:g}" / "noise_ref" / f"{row['id']}.wav")
            noise = noisy - clean
            mask = active_mask(noise, SR, threshold_db)
            achieved = 10 * torch.log10(clean.pow(2).mean() / noise[mask].pow(2).mean()).item()
            assert achieved == pytest.approx(snr, abs=0.1)
            assert float(row["achieved_snr"]) == pytest.approx(snr, abs=0.01)
            assert noisy.abs().max() <= 0.99 + 1e-3
            assert ref.shape == (ref_len,) and ref.abs().max() > 0
            windows = noise.unfold(0, ref.numel() // 2, 64)
            piece = ref[: ref.numel() // 2]
            ncc = (windows @ piece) / (windows.norm(dim=1) * piece.norm() + 1e-9)
            assert ncc.abs().max() < 0.5, f"{row['id']}: the reference repeats the mixed noise"
    return rows


# --------------------------------------------------------------------------------------------- ESC-50

def test_esc50_sets_are_deterministic_honest_and_at_target_snr(inputs, tmp_path, capsys):
    esc, clean = inputs / "ESC-50-master", inputs / "clean"
    summary = build_esc50(esc, clean, tmp_path / "a", snrs=(0, 5, 10), seed=3, progress=False)
    assert summary["items"] == 4 and summary["per_snr"]["snr_5"]["mean_achieved_snr"] == pytest.approx(5, abs=0.01)
    assert sum(summary["per_category"].values()) == 4 and max(summary["per_category"].values()) == 2
    rows = check_sets(tmp_path / "a", (0, 5, 10), 4)
    for row in rows:
        assert row["category"] in CATEGORIES and row["id"].endswith(row["category"])
        assert row["reference_file"] != row["noise_file"]  # another clip of the category
        target = {"dog": "0", "rain": "1", "siren": "2"}[row["category"]]
        assert row["noise_file"].endswith(f"-{target}.wav") and row["reference_file"].endswith(f"-{target}.wav")
        assert int(row["noise_offset"]) >= 0 and row["speech_file"].endswith(".wav")
    build_esc50(esc, clean, tmp_path / "b", snrs=(0, 5, 10), seed=3, progress=False)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")  # same seed: identical bytes
    build_esc50(esc, clean, tmp_path / "c", snrs=(0, 5, 10), seed=4, progress=False)
    assert digest(tmp_path / "a") != digest(tmp_path / "c")


def test_esc50_rerun_is_idempotent_and_changed_params_are_refused(inputs, tmp_path):
    esc, clean, out = inputs / "ESC-50-master", inputs / "clean", tmp_path / "esc"
    assert prepare_main(["esc50", "--esc50", str(esc), "--clean", str(clean), "--out", str(out), "--snrs", "5",
                          "--no-progress"]) == 0
    before = mtimes(out)
    again = build_esc50(esc, clean, out, snrs=(5,), progress=False)
    assert again["already_built"] and again["items"] == 4
    assert mtimes(out) == before
    with pytest.raises(BuildError, match=r"other parameters \(seed: 0 -> 1\).*Nothing was written"):
        build_esc50(esc, clean, out, snrs=(5,), seed=1, progress=False)
    with pytest.raises(BuildError, match="snrs"):
        build_esc50(esc, clean, out, snrs=(0, 5), progress=False)
    assert mtimes(out) == before and not (out / "snr_0").exists()


def test_esc50_resumes_an_interrupted_build(inputs, tmp_path):
    esc, clean = inputs / "ESC-50-master", inputs / "clean"
    build_esc50(esc, clean, tmp_path / "full", snrs=(5,), progress=False)
    out = tmp_path / "partial"
    build_esc50(esc, clean, out, snrs=(5,), progress=False)
    (out / "DONE.json").unlink()  # as if interrupted: PARAMS.json and some files are there
    write_text_atomic(out / "PARAMS.json", (tmp_path / "full" / "DONE.json").read_text())
    victim = next((out / "snr_5" / "noisy").iterdir())
    victim.unlink()
    (out / "snr_5" / "manifest.csv").unlink()
    build_esc50(esc, clean, out, snrs=(5,), progress=False)
    assert digest(out) == digest(tmp_path / "full") and not (out / "PARAMS.json").exists()


def test_esc50_category_and_fold_selection(inputs, tmp_path, capsys):
    esc, clean = inputs / "ESC-50-master", inputs / "clean"
    summary = build_esc50(esc, clean, tmp_path / "o", snrs=(0,), categories=["rain"], folds=[1, 2], num_items=6,
                          progress=False)
    assert summary["per_category"] == {"rain": 6} and summary["noise_clips"] == 2
    rows = read_manifest(tmp_path / "o" / "snr_0" / "manifest.csv")
    assert len({r["id"] for r in rows}) == 6  # repeated speech gets distinct ids
    assert {r["noise_file"][0] for r in rows} <= {"1", "2"}  # folds 1 and 2 only
    with pytest.raises(BuildError, match="unknown category thunder.*Available: dog, rain, siren"):
        build_esc50(esc, clean, tmp_path / "x", categories=["thunder"], progress=False)
    with pytest.raises(BuildError, match="no clip"):
        build_esc50(esc, clean, tmp_path / "x", folds=[5], progress=False)
    assert not (tmp_path / "x").exists()


def test_esc50_same_clip_reference_or_counted_fallback(inputs, tmp_path):
    # bursts of 1-1.5 s under 1.5-2.5 s of speech: no room for a reference outside the mixed stretch
    summary = build_esc50(inputs / "ESC-50-master", inputs / "clean", tmp_path / "short", snrs=(5,),
                          reference="same_clip", ref_seconds=0.25, progress=False)
    rows = read_manifest(tmp_path / "short" / "snr_5" / "manifest.csv")
    assert summary["same_clip_fallbacks"] == 4 and all(r["reference_file"] != r["noise_file"] for r in rows)
    # bursts of 4.5 s: the reference is a stretch of the same clip outside the mixed one
    esc = make_esc50(tmp_path / "esc", np.random.default_rng(1), burst=(4.5, 4.6))
    summary = build_esc50(esc, inputs / "clean", tmp_path / "long", snrs=(5,), reference="same_clip",
                          ref_seconds=0.25, progress=False)
    rows = check_sets(tmp_path / "long", (5,), 4, ref_len=SR // 4)
    assert summary["same_clip_fallbacks"] == 0 and all(r["reference_file"] == r["noise_file"] for r in rows)


def test_looped_event_reference_is_rejected_and_the_manifest_says_so(inputs, tmp_path):
    """A disjoint stretch of a looped clip is a near-copy of the mixed one: the builder rejects it, takes
    another clip of the class, and the manifest and DONE.json say so."""
    esc = make_esc50(tmp_path / "esc", np.random.default_rng(2), looped=True)
    summary = build_esc50(esc, inputs / "clean", tmp_path / "out", snrs=(5,), reference="same_clip",
                          ref_seconds=0.5, progress=False)
    rows = read_manifest(tmp_path / "out" / "snr_5" / "manifest.csv")
    assert summary["references_rejected_near_copy"] >= 4 * 4 and summary["same_clip_fallbacks"] == 4
    for row in rows:
        assert row["reference_relation"] == "same_class_other_recording" and row["reference_file"] != row["noise_file"]
        assert float(row["reference_max_xcorr"]) < 0.5


def test_esc50_bad_inputs(inputs, tmp_path, caplog):
    clean = inputs / "clean"
    with pytest.raises(BuildError, match="audio.*not found.*ESC-50 folder"):
        build_esc50(tmp_path / "nothing", clean, tmp_path / "o", progress=False)
    with pytest.raises(BuildError, match="clean speech folder not found"):
        build_esc50(inputs / "ESC-50-master", tmp_path / "nothing", tmp_path / "o", progress=False)
    # a corrupt clip and a csv row whose file is missing: skipped and counted; a 48 kHz stereo clean file works
    esc = make_esc50(tmp_path / "esc", np.random.default_rng(5))
    (esc / "audio" / "1-101-A-0.wav").write_bytes(b"garbage")
    (esc / "audio" / "2-112-A-1.wav").unlink()  # (one clip of dog and one of rain: each keeps two)
    speech = tmp_path / "speech"
    write_audio(speech / "short.wav", np.zeros(SR // 10), SR)
    stereo = speech_like(2 * 48000, np.random.default_rng(1), 48000)
    sf.write(speech / "stereo48k.wav", np.stack([stereo, stereo], 1), 48000)
    with caplog.at_level(logging.INFO):
        summary = build_esc50(esc, speech, tmp_path / "o", snrs=(5,), progress=False)
    assert summary["skipped_noise"] == 2 and summary["skipped_speech"] == 1 and summary["items"] == 1
    assert "unreadable" in caplog.text and "missing" in caplog.text and "short.wav" in caplog.text
    assert "resampled to 16000 Hz" in caplog.text
    # a folder that is not a builder's: refused, untouched
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(BuildError, match="holds no DONE.json"):
        build_esc50(inputs / "ESC-50-master", clean, tmp_path / "foreign", progress=False)
    assert [p.name for p in (tmp_path / "foreign").iterdir()] == ["notes.txt"]
    # a category left with a single short clip has no honest reference: a clear error, never an overlap
    (esc / "audio" / "2-102-A-0.wav").unlink()
    with pytest.raises(HonestyError, match="stereo48k \\(dog\\): no honest noise reference.*overlapped"):
        build_esc50(esc, speech, tmp_path / "o2", snrs=(5,), progress=False)


def test_cli_reports_errors_without_traceback(tmp_path, capsys):
    code = prepare_main(["esc50", "--esc50", str(tmp_path / "no"), "--clean", str(tmp_path), "--out",
                          str(tmp_path / "o"), "--no-progress"])
    assert code == 2 and "error:" in capsys.readouterr().err


def test_python_m_prepare_ends_a_builder_error_with_one_line(tmp_path):
    """Under `python -m` the CLI module is __main__: the builders' errors must still be the ones it catches."""
    result = subprocess.run([sys.executable, "-m", "sgmse_nc.data.prepare", "esc50", "--esc50", str(tmp_path / "no"),
                             "--clean", str(tmp_path), "--out", str(tmp_path / "o"), "--no-progress"],
                            capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr and "ESC-50 folder" in lines[0]


# -------------------------------------------------------------------------------------- non-stationary

def test_nonstationary_synthetic_sets(inputs, tmp_path, capsys):
    clean = inputs / "clean"
    code = prepare_main(["nonstationary", "--clean", str(clean), "--out", str(tmp_path / "a"), "--snrs", "0", "5",
                          "--num-items", "6", "--seed", "2", "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "kind: concat 2, events 2, varying_snr 2" in printed and "mean achieved SNR" in printed
    rows = check_sets(tmp_path / "a", (0, 5), 6)
    assert {r["kind"] for r in rows} == {"concat", "varying_snr", "events"}
    for row in rows:
        assert row["id"].endswith(row["kind"]) and row["detail"]
        if row["kind"] == "concat":
            assert ">" in row["category"] and row["detail"].startswith("segments")
        if row["kind"] == "events":
            assert "+" in row["category"] and "events at" in row["detail"]
    build_nonstationary(clean, tmp_path / "b", snrs=(0, 5), num_items=6, seed=2, progress=False)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")


def test_nonstationary_noise_actually_changes_within_the_utterance(inputs, tmp_path):
    build_nonstationary(inputs / "clean", tmp_path / "o", snrs=(5,), kinds=["varying_snr"], synthetic=["white"],
                        num_items=3, progress=False)
    for row in read_manifest(tmp_path / "o" / "snr_5" / "manifest.csv"):
        noise = (read_audio(tmp_path / "o" / "snr_5" / "noisy" / f"{row['id']}.wav")
                 - read_audio(tmp_path / "o" / "snr_5" / "clean" / f"{row['id']}.wav"))
        frames = noise[: noise.numel() // 1600 * 1600].reshape(-1, 1600).pow(2).mean(1)
        spread_db = 10 * torch.log10(frames.max() / frames.min()).item()
        assert spread_db > 3, f"{row['id']} ({row['detail']}): white noise level should vary"


def test_nonstationary_from_noise_pools(inputs, tmp_path):
    summary = build_nonstationary(inputs / "clean", tmp_path / "o", noise_dirs=[inputs / "demand"], snrs=(5,),
                                  num_items=6, progress=False)
    assert summary["noise_types"] == 2 and summary["references_rejected_overlap"] == 0
    rows = check_sets(tmp_path / "o", (5,), 6)
    assert all(set(r["category"].replace(">", "+").split("+")) <= {"demand/kitchen", "demand/street"} for r in rows)
    # ESC-50 as the pool: classes from its csv, active spans only, references from other clips
    esc = inputs / "ESC-50-master"
    summary = build_nonstationary(inputs / "clean", tmp_path / "e", noise_dirs=[esc / "audio"],
                                  noise_labels=str(esc / "meta" / "esc50.csv"), trim_silence=True,
                                  reference="same_class", snrs=(5,), num_items=3, progress=False)
    assert summary["noise_types"] == 3
    check_sets(tmp_path / "e", (5,), 3)


def test_nonstationary_default_reference_on_short_real_recordings(inputs, tmp_path):
    """Recordings shorter than an utterance (the ESC-50 case, and many real folders): no stretch of the mixed
    recording is disjoint from the noise, so the default (same_recording) falls back to another recording of
    the class, as the policy says, instead of stopping; a class with one short recording fails with a hint
    that names an option value the command accepts."""
    rng = np.random.default_rng(5)
    noise = tmp_path / "short"
    for label in ("fan", "traffic", "crowd"):
        for take in range(3):
            write_audio(noise / label / f"{take}.wav", 0.05 * rng.standard_normal(int(1.2 * SR)), SR)
    summary = build_nonstationary(inputs / "clean", tmp_path / "o", noise_dirs=[noise], snrs=(5,), num_items=6,
                                  progress=False)
    assert summary["references_rejected_overlap"] > 0  # it tried the recording itself first
    rows = check_sets(tmp_path / "o", (5,), 6)
    relations = [set(r["reference_relation"].split(";")) for r in rows]
    assert set().union(*relations) <= {"same_class_other_recording", "same_recording_disjoint"}
    assert any("same_class_other_recording" in r for r in relations)  # the fallback was needed and taken
    lonely = tmp_path / "lonely"
    for label in ("fan", "traffic"):
        write_audio(lonely / label / "0.wav", 0.05 * rng.standard_normal(int(1.2 * SR)), SR)
    with pytest.raises(HonestyError, match="no honest noise reference") as err:
        build_nonstationary(inputs / "clean", tmp_path / "l", noise_dirs=[lonely], snrs=(5,), num_items=2,
                            progress=False)
    assert "--reference same_class" in str(err.value) and "other_clip" not in str(err.value)
    assert "on_failure" not in str(err.value)  # no such option in this command
    assert prepare_main(["nonstationary", "--clean", str(inputs / "clean"), "--out", str(tmp_path / "m"),
                         "--noise", str(lonely), "--reference", "same_class", "--snrs", "5", "--num-items", "1",
                         "--no-progress"]) == 2  # same_class is accepted (one recording per class: an error)


def test_nonstationary_bad_inputs(inputs, tmp_path):
    clean = inputs / "clean"
    with pytest.raises(BuildError, match="at least 2 noise types"):
        build_nonstationary(clean, tmp_path / "o", synthetic=["pink"], progress=False)
    with pytest.raises(BuildError, match="unknown synthetic noise 'purple'"):
        build_nonstationary(clean, tmp_path / "o", synthetic=["purple", "pink"], progress=False)
    with pytest.raises(BuildError, match="nowhere: noise folder not found"):
        build_nonstationary(clean, tmp_path / "o", noise_dirs=[tmp_path / "nowhere"], progress=False)
    with pytest.raises(BuildError, match="unknown or no kinds"):
        build_nonstationary(clean, tmp_path / "o", kinds=["chaos"], progress=False)
    assert not (tmp_path / "o").exists()
    # a silent clean file is skipped and counted; ids that collide are refused, naming both files
    speech = tmp_path / "speech"
    write_audio(speech / "a" / "x.wav", speech_like(SR, np.random.default_rng(2)), SR)
    write_audio(speech / "silent.wav", np.zeros(SR), SR)
    summary = build_nonstationary(speech, tmp_path / "s", kinds=["varying_snr"], snrs=(0,), progress=False)
    assert summary["items"] == 1 and summary["skipped_speech"] == 1
    write_audio(speech / "a_x.wav", speech_like(SR, np.random.default_rng(3)), SR)
    with pytest.raises(BuildError, match=r"a_x.wav and a/x.wav both give the id 'a_x_varying_snr'"):
        build_nonstationary(speech, tmp_path / "c", kinds=["varying_snr"], snrs=(0,), progress=False)
    # one type is enough for a varying SNR
    build_nonstationary(clean, tmp_path / "v", synthetic=["pink"], kinds=["varying_snr"], snrs=(0,), progress=False)
    assert len(read_manifest(tmp_path / "v" / "snr_0" / "manifest.csv")) == 4
