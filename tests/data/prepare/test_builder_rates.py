"""The test-set builders (ESC-50, non-stationary) at a configured rate: fake corpora made here at 24 and 48 kHz,
noise of other rates (ESC-50's 44.1 kHz, a 32 kHz pool) resampled to the set's rate with the project's resampler,
the rate recorded in DONE.json, and clean speech below the rate refused before anything is written."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from sgmse_nc.audio import read_audio, resample_audio, write_audio
from sgmse_nc.data.errors import BuildError
from sgmse_nc.data.manifest import read_manifest
from sgmse_nc.data.prepare.cli import main as prepare_main
from sgmse_nc.data.prepare.esc50 import build_esc50
from sgmse_nc.data.prepare.nonstationary import build_nonstationary
from sgmse_nc.data.synthetic import speech_like
from tests.data.prepare.test_builders import make_esc50

NOISE_RATE = 32000  # the non-stationary noise pool's own rate: neither the set's nor ESC-50's


def make_inputs(root, rate: int):
    """Clean speech at `rate`, an ESC-50 layout at 44.1 kHz (bursts longer than the speech, so no noise loops)
    and a DEMAND-like pool at 32 kHz, two classes of one long recording each."""
    rng = np.random.default_rng(0)
    for k in range(2):
        write_audio(root / "clean" / f"p{k}_00{k}.wav", speech_like(int(1.2 * rate), rng, sr=rate), rate)
    make_esc50(root / "ESC-50-master", rng, burst=(3.0, 4.0))
    for label in ("kitchen", "street"):
        write_audio(root / "pool" / label / "ch01.wav", 0.05 * rng.standard_normal(8 * NOISE_RATE), NOISE_RATE)
    return root


def mixed_noise_matches_its_source(out, row, source, rate: int) -> float:
    """Normalised correlation of the noise mixed into an item (noisy - clean) with its source file resampled to
    the set's rate (sgmse_nc.audio.resample_audio) at the manifest's offset: near 1 when the builder read the
    noise at the set's rate, near 0 when it read it at any other. Compared below 1 kHz, where the pool's partial
    reads (which start on a whole sample of the file's own rate) shift nothing that matters."""
    folder = out / f"snr_{row['snr']:g}"
    noise = read_audio(folder / "noisy" / f"{row['id']}.wav", rate) - read_audio(folder / "clean" / f"{row['id']}.wav", rate)
    wav, file_rate = sf.read(source, dtype="float32")
    start = int(row["noise_offset"])
    expected = resample_audio(torch.from_numpy(wav), file_rate, rate)[start:start + noise.numel()]
    noise, expected = (resample_audio(w, rate, 2000) for w in (noise, expected))
    return float((noise @ expected) / (noise.norm() * expected.norm()))


def check_rate(out, rate: int, ref_seconds: float = 1.0) -> list[dict]:
    done = json.loads((out / "DONE.json").read_text())
    assert done["params"]["sample_rate"] == done["summary"]["sample_rate"] == rate
    rows = read_manifest(out / "snr_5" / "manifest.csv")
    for row in rows:
        speech = sf.info(out.parent / "inputs" / "clean" / row["speech_file"])
        for sub in ("clean", "noisy", "noise_ref"):
            info = sf.info(out / "snr_5" / sub / f"{row['id']}.wav")
            assert info.samplerate == rate
            assert info.frames == (round(ref_seconds * rate) if sub == "noise_ref" else speech.frames)
    return rows


@pytest.mark.parametrize("rate", [48000, 24000])
def test_esc50_set_at_the_configured_rate(tmp_path, rate):
    inputs = make_inputs(tmp_path / "inputs", rate)
    out = tmp_path / "esc50"
    summary = build_esc50(inputs / "ESC-50-master", inputs / "clean", out, snrs=(5,), seed=0, progress=False,
                          sample_rate=rate)
    assert summary["sample_rate"] == rate and summary["items"] == 2
    for row in check_rate(out, rate):
        ncc = mixed_noise_matches_its_source(out, row, inputs / "ESC-50-master" / "audio" / row["noise_file"], rate)
        assert ncc > 0.95, f"{row['id']}: the mixed noise is not the ESC-50 clip at {rate} Hz (ncc {ncc:.3f})"


@pytest.mark.parametrize("rate", [48000, 24000])
def test_nonstationary_set_at_the_configured_rate(tmp_path, rate):
    inputs = make_inputs(tmp_path / "inputs", rate)
    out = tmp_path / "nonstationary"
    code = prepare_main(["nonstationary", "--clean", str(inputs / "clean"), "--out", str(out), "--noise",
                         str(inputs / "pool"), "--kinds", "varying_snr", "--snrs", "5", "--sample-rate", str(rate),
                         "--no-progress"])
    assert code == 0
    for row in check_rate(out, rate):
        ncc = mixed_noise_matches_its_source(out, row, inputs / "pool" / row["noise_file"], rate)
        assert ncc > 0.8, f"{row['id']}: the mixed noise is not the 32 kHz recording at {rate} Hz (ncc {ncc:.3f})"


def test_a_set_records_the_default_rate_and_old_16k_sets_still_resume(tmp_path):
    inputs = make_inputs(tmp_path / "inputs", 16000)
    out = tmp_path / "nonstationary"
    build_nonstationary(inputs / "clean", out, snrs=(5,), kinds=("concat",), progress=False)
    check_rate(out, 16000)
    done = json.loads((out / "DONE.json").read_text())
    del done["params"]["sample_rate"]  # as a set built before the rate was an option records it
    (out / "DONE.json").write_text(json.dumps(done))
    assert build_nonstationary(inputs / "clean", out, snrs=(5,), kinds=("concat",), progress=False)["already_built"]
    with pytest.raises(BuildError, match="sample_rate"):
        build_nonstationary(inputs / "clean", out, snrs=(5,), kinds=("concat",), progress=False, sample_rate=8000)


def test_clean_speech_below_the_rate_is_refused_before_anything_is_written(tmp_path, capsys):
    inputs = make_inputs(tmp_path / "inputs", 16000)
    for builder in ("esc50", "nonstationary"):
        out = tmp_path / builder
        extra = ["--esc50", str(inputs / "ESC-50-master")] if builder == "esc50" else []
        code = prepare_main([builder, *extra, "--clean", str(inputs / "clean"), "--out", str(out), "--sample-rate",
                             "48000", "--no-progress"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith("error: ")
        assert "16000 Hz" in err[0] and "--sample-rate 48000" in err[0] and "--sample-rate 16000" in err[0]
        assert not out.exists()
