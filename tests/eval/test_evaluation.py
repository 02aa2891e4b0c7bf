import json
import math

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from sgmse_nc.eval import evaluate
from sgmse_nc.eval import folder as evaluation
from sgmse_nc.eval.folder import EvaluationError, default_out_dir, evaluate_folders

SR = 16000
# id -> (snr, noise_type); one id in a subfolder to check pairing by relative path
FILES = {"a01": (0, "babble"), "a02": (5, "babble"), "a03": (10, "cafe"),
         "a04": (0, "cafe"), "a05": (5, "babble"), "sub/a06": (10, "cafe")}


def speech_like(seconds, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 120 + 40 * rng.random()
    tones = sum(np.sin(2 * np.pi * k * f0 * t + rng.random() * 6) / k for k in range(1, 12))
    return 0.1 * tones * np.clip(np.sin(2 * np.pi * 3 * t), 0, None) ** 0.5


def at_snr(speech, noise, snr):
    return noise * np.sqrt(np.mean(speech ** 2) / np.mean(noise ** 2) / 10 ** (snr / 10))


@pytest.fixture
def corpus(tmp_path):
    """clean/, noisy/ (white noise at the manifest SNR), enhanced/ (+15 dB better) and a manifest."""
    for seed, (file_id, (snr, _)) in enumerate(FILES.items()):
        rng = np.random.default_rng(100 + seed)
        clean = speech_like(2.0, seed)
        noise = rng.standard_normal(len(clean))
        for folder, wav in [("clean", clean), ("noisy", clean + at_snr(clean, noise, snr)),
                            ("enhanced", clean + at_snr(clean, noise, snr + 15))]:
            path = tmp_path / folder / f"{file_id}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, wav.astype(np.float32), SR, subtype="FLOAT")
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame([{"id": f"{i}.wav", "snr": s, "noise_type": n} for i, (s, n) in FILES.items()]
                 + [{"id": "not_evaluated", "snr": 0, "noise_type": "cafe"}]).to_csv(manifest, index=False)
    return tmp_path


def folder_state(folder):
    return sorted((p.relative_to(folder).as_posix(), p.stat().st_mtime_ns) for p in folder.rglob("*"))


def test_end_to_end_with_noisy_and_groups(corpus):
    inputs = {name: folder_state(corpus / name) for name in ("clean", "noisy", "enhanced")}
    summary = evaluate_folders(corpus / "enhanced", corpus / "clean", corpus / "noisy", out_dir=corpus / "eval",
                               manifest=corpus / "manifest.csv", group_by=["snr", "noise_type"], quiet=True)
    out = corpus / "eval"
    rows = pd.read_csv(out / "per_file.csv", dtype={"id": str})
    assert sorted(rows["id"]) == sorted(FILES)
    for column in ("snr", "noise_type", "pesq", "estoi", "si_sdr", "noisy_pesq", "delta_si_sdr", "errors"):
        assert column in rows.columns
    by_id = rows.set_index("id")
    assert by_id.loc["sub/a06", "noise_type"] == "cafe"
    for file_id, (snr, _) in FILES.items():  # white noise: SI-SDR of the mixture ≈ its SNR
        assert by_id.loc[file_id, "noisy_si_sdr"] == pytest.approx(snr, abs=0.5)
        assert by_id.loc[file_id, "delta_si_sdr"] == pytest.approx(15, abs=1.0)

    saved = json.loads((out / "summary.json").read_text())
    assert {"enhanced", "noisy", "improvement", "groups", "n_files", "settings"} <= saved.keys()
    assert set(saved["enhanced"]) == {"pesq", "estoi", "si_sdr"}
    assert set(saved["noisy"]["si_sdr"]) == {"mean", "std", "n"}
    assert saved["n_files"] == 6 and saved["enhanced"]["si_sdr"]["n"] == 6
    assert list(saved["groups"]["snr"]) == ["0", "5", "10"]  # numeric order
    assert saved["groups"]["snr"]["5"]["n_files"] == 2
    assert saved["groups"]["snr"]["10"]["noisy"]["si_sdr"]["mean"] == pytest.approx(10, abs=0.5)
    assert saved["enhanced"]["estoi"]["mean"] > saved["noisy"]["estoi"]["mean"]
    assert summary["enhanced"]["si_sdr"]["mean"] == pytest.approx(saved["enhanced"]["si_sdr"]["mean"])

    markdown = (out / "summary.md").read_text()
    assert "±" in markdown and "snr=10" in markdown and "noise_type=babble" in markdown
    long = pd.read_csv(out / "summary.csv")
    assert {"group_by", "group", "signal", "metric", "mean", "std", "n"} <= set(long.columns)
    assert len(long) == (1 + 3 + 2) * 3 * 3  # (all + snr groups + noise groups) × signals × metrics
    for metric in ("pesq", "estoi", "si_sdr"):
        assert (out / f"plot_{metric}.png").stat().st_size > 1000
    assert {name: folder_state(corpus / name) for name in inputs} == inputs  # inputs untouched


def test_mismatched_folders_are_a_clear_error_unless_allowed(corpus):
    (corpus / "enhanced" / "a02.wav").unlink()
    with pytest.raises(EvaluationError, match=r"1 clean file\(s\) have no enhanced counterpart .*a02"):
        evaluate_folders(corpus / "enhanced", corpus / "clean", out_dir=corpus / "eval", quiet=True)
    summary = evaluate_folders(corpus / "enhanced", corpus / "clean", out_dir=corpus / "eval",
                               allow_missing=True, metrics=("si_sdr",), plot=False, quiet=True)
    assert summary["n_files"] == 5 and summary["n_skipped"] == 1


def test_length_mismatch_names_both_files(corpus):
    path = corpus / "enhanced" / "a03.wav"
    wav, _ = sf.read(path)
    sf.write(path, wav[: len(wav) // 2], SR)
    with pytest.raises(EvaluationError, match=r"a03\.wav .* vs .*clean/a03\.wav"):
        evaluate_folders(corpus / "enhanced", corpus / "clean", out_dir=corpus / "eval", quiet=True)


def test_manifest_without_a_row_for_a_file_is_an_error(corpus):
    manifest = corpus / "manifest.csv"
    table = pd.read_csv(manifest)
    table[table["id"] != "a04.wav"].to_csv(manifest, index=False)
    with pytest.raises(EvaluationError, match="no row for 1 evaluated file.*a04"):
        evaluate_folders(corpus / "enhanced", corpus / "clean", out_dir=corpus / "eval",
                         manifest=manifest, group_by=["snr"], quiet=True)
    with pytest.raises(EvaluationError, match=r"no column\(s\) \['room'\]"):
        evaluate_folders(corpus / "enhanced", corpus / "clean", out_dir=corpus / "eval",
                         manifest=manifest, group_by=["room"], quiet=True)


def test_output_inside_an_input_folder_is_refused(corpus):
    with pytest.raises(EvaluationError, match="inside the enhanced folder"):
        evaluate_folders(corpus / "enhanced", corpus / "clean", out_dir=corpus / "enhanced" / "eval", quiet=True)
    assert default_out_dir(corpus / "enhanced") == (corpus / "enhanced_eval").resolve()


def test_silent_output_gives_nan_not_a_crash(corpus):
    path = corpus / "enhanced" / "a01.wav"
    sf.write(path, np.zeros(sf.info(path).frames, dtype=np.float32), SR)
    summary = evaluate_folders(corpus / "enhanced", corpus / "clean", out_dir=corpus / "eval", plot=False,
                               quiet=True)
    assert summary["enhanced"]["pesq"]["n"] == 5 and summary["missing_values"]["pesq"] == 1
    rows = pd.read_csv(corpus / "eval" / "per_file.csv").set_index("id")
    assert math.isnan(rows.loc["a01", "pesq"]) and "estimate is silent" in rows.loc["a01", "errors"]
    assert "(n=5)" in (corpus / "eval" / "summary.md").read_text()


def counting(monkeypatch):
    calls = []
    original = evaluation.compute_metrics

    def spy(estimate, reference, *args, **kwargs):
        calls.append(kwargs.get("names"))
        return original(estimate, reference, *args, **kwargs)

    monkeypatch.setattr(evaluation, "compute_metrics", spy)
    return calls


def test_rerun_reuses_rows_and_recomputes_changed_files(corpus, monkeypatch):
    args = dict(enhanced_dir=corpus / "enhanced", clean_dir=corpus / "clean", noisy_dir=corpus / "noisy",
                out_dir=corpus / "eval", plot=False, quiet=True)
    first = evaluate_folders(**args)
    calls = counting(monkeypatch)
    again = evaluate_folders(**args)
    assert calls == []
    assert again["enhanced"] == first["enhanced"]
    path = corpus / "enhanced" / "a05.wav"
    wav, _ = sf.read(path)
    sf.write(path, 0.5 * wav, SR)  # a new file: new size/mtime, so a new key
    evaluate_folders(**args)
    assert calls == [(path, corpus / "clean" / "a05.wav"), (corpus / "noisy" / "a05.wav", corpus / "clean" / "a05.wav")]
    # other folders: nothing reused
    calls.clear()
    evaluate_folders(**{**args, "noisy_dir": None})
    assert len(calls) == len(FILES)


def test_interrupted_run_resumes(corpus, monkeypatch):
    args = dict(enhanced_dir=corpus / "enhanced", clean_dir=corpus / "clean", out_dir=corpus / "eval",
                metrics=("si_sdr", "estoi"), plot=False, quiet=True)
    original, done = evaluation.evaluate_pair, []

    def interrupted_after_three(pair, *rest):
        if len(done) == 3:
            raise KeyboardInterrupt
        done.append(pair.id)
        return original(pair, *rest)

    monkeypatch.setattr(evaluation, "evaluate_pair", interrupted_after_three)
    with pytest.raises(KeyboardInterrupt):
        evaluate_folders(**args)
    saved = pd.read_csv(corpus / "eval" / "per_file.csv")
    assert sorted(saved["id"]) == sorted(done)  # what was computed is on disk
    monkeypatch.setattr(evaluation, "evaluate_pair", original)
    calls = counting(monkeypatch)
    summary = evaluate_folders(**args)
    assert len(calls) == len(FILES) - 3 and summary["n_files"] == len(FILES)


@pytest.mark.slow  # ~10 s: each spawned worker imports torch
def test_parallel_workers_match_serial(corpus):
    args = dict(enhanced_dir=corpus / "enhanced", clean_dir=corpus / "clean", metrics=("si_sdr", "pesq"),
                plot=False, quiet=True)
    serial = evaluate_folders(**args, out_dir=corpus / "serial")
    parallel = evaluate_folders(**args, out_dir=corpus / "parallel", num_workers=2)
    assert parallel["enhanced"]["si_sdr"]["mean"] == pytest.approx(serial["enhanced"]["si_sdr"]["mean"])
    assert parallel["enhanced"]["pesq"]["mean"] == pytest.approx(serial["enhanced"]["pesq"]["mean"])


def test_cli_runs_and_reports_user_errors_without_traceback(corpus, capsys):
    code = evaluate.main(["--enhanced", str(corpus / "enhanced"), "--clean", str(corpus / "clean"),
                          "--noisy", str(corpus / "noisy"), "--manifest", str(corpus / "manifest.csv"),
                          "--group-by", "snr, noise_type", "--pesq-mode", "nb", "--no-plot"])
    assert code == 0
    out_dir = corpus / "enhanced_eval"
    assert "PESQ-NB" in (out_dir / "summary.md").read_text()
    assert "| snr=0 | enhanced | 2 |" in capsys.readouterr().out
    code = evaluate.main(["--enhanced", str(corpus / "missing"), "--clean", str(corpus / "clean")])
    err = capsys.readouterr().err
    assert code == 2 and "enhanced folder" in err and "missing" in err and "Traceback" not in err
