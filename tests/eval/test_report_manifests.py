"""The report fits any manifest and any run (sgmse-report through its entry point, the model's enhancement
stood in): grouping columns found by name (aliases, a config mapping, a warning for one no set has), one row
for an unconditional run, the threads setting, embedding diagnostics of a dynamic-mixing run (from its own
noise pools) or one line saying why they are skipped, and a non-zero exit when they fail."""
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from omegaconf import OmegaConf

from sgmse_nc.config import compose_config
from sgmse_nc.enhance import folder as enhancement
from sgmse_nc.eval.report import cli, study
from sgmse_nc.eval.report.plots import spectrogram_columns

SR = 16000


def make_set(folder: Path, speech, columns: dict, n: int = 4) -> Path:
    """A test set whose manifest has `columns` ({name: per-file values}) besides id."""
    for i in range(n):
        rng = np.random.default_rng(i)
        clean = speech(1.0, f0=110.0 + 20 * i, seed=i).numpy()
        noise = 0.03 * rng.standard_normal(2 * len(clean))
        for sub, wav in [("clean", clean), ("noisy", clean + noise[:len(clean)]), ("noise_ref", noise[len(clean):])]:
            (folder / sub).mkdir(parents=True, exist_ok=True)
            sf.write(folder / sub / f"u{i}.wav", wav.astype(np.float32), SR, subtype="FLOAT")
    pd.DataFrame({"id": [f"u{i}" for i in range(n)], **{k: v[:n] for k, v in columns.items()}}).to_csv(
        folder / "manifest.csv", index=False)
    return folder


def fake_enhance(ckpt, noisy_dir, out_dir, options, ref_dir=None):
    """Stands in for the model: the noisy file scaled (by more with a reference); records the torch threads."""
    fake_enhance.threads.append(torch.get_num_threads())
    fake_enhance.ref_seconds.append(options.ref_seconds)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for path in Path(noisy_dir).glob("*.wav"):
        wav, sr = sf.read(path)
        sf.write(Path(out_dir) / path.name, wav * (0.5 if ref_dir is None else 0.9), sr)
    return {}


@pytest.fixture
def report(tmp_path, monkeypatch, caplog, capsys):
    """report(*overrides, runs={name: encoder}) -> (exit status, out_dir, log lines and stderr); a run whose encoder is
    "none" is unconditional. Runs are loose checkpoints unless the test makes run folders itself."""
    fake_enhance.threads, fake_enhance.ref_seconds = [], []
    monkeypatch.setattr(enhancement, "enhance_folder", fake_enhance)
    encoders, run_info = {}, study.run_info

    def info(ckpt, folder):  # a real checkpoint's own; an empty stand-in's encoder as the test says
        if Path(ckpt).stat().st_size:
            return run_info(ckpt, folder)
        return {"encoder": encoders[Path(ckpt)], "backbone": "x", "steps": 1,
                **({"data": study.describe_data(OmegaConf.load(folder / "config.yaml").data.train)}
                   if folder is not None and (folder / "config.yaml").is_file() else {})}
    monkeypatch.setattr(study, "run_info", info)
    threads = torch.get_num_threads()

    def run(*overrides, runs):
        args = []
        for name, encoder in runs.items():
            ckpt = tmp_path / name / "checkpoints" / "last.ckpt"
            if not ckpt.is_file():
                ckpt.parent.mkdir(parents=True)
                ckpt.write_bytes(b"")
            encoders[ckpt] = encoder
            args.append(f"+runs.{name}={ckpt}")
        caplog.clear()
        capsys.readouterr()
        code = cli.main([*args, f"out_dir={tmp_path / 'rep'}", "score_workers=0", "metrics=[si_sdr]", *overrides])
        return code, tmp_path / "rep", "\n".join([*caplog.messages, capsys.readouterr().err])

    yield run
    torch.set_num_threads(threads)


def saved(out: Path, set_name: str) -> dict:
    return json.loads((out / set_name / "comparison.json").read_text())


def test_grouping_columns_are_found_by_alias_or_mapping_and_a_missing_one_is_one_warning(tmp_path, speech, report):
    make_set(tmp_path / "aliased", speech, {"snr_target_db": [0, 5, 0, 5], "noise_category": ["rain", "dog"] * 2})
    make_set(tmp_path / "mapped", speech, {"level_in": [10, 10, 20, 20], "category": ["wind"] * 4})
    code, out, log = report("+sets.aliased=" + str(tmp_path / "aliased"), "+sets.mapped=" + str(tmp_path / "mapped"),
                            "+group_columns.level_in=snr", "group_by=[snr,category,kind,room]",
                            "diagnostics.enabled=false", "guidance=[0,1]", runs={"a": "cnn"})
    assert code == 0, log
    for name, snrs, categories in (("aliased", ["0", "5"], ["dog", "rain"]), ("mapped", ["10", "20"], ["wind"])):
        result = saved(out, name)
        assert result["group_by"] == ["snr", "category"]
        assert sorted(result["noisy"]["groups"]["snr"]) == snrs
        assert sorted(result["noisy"]["groups"]["category"]) == categories
        assert "### By snr" in (out / name / "comparison.md").read_text()
        assert (out / name / "plot_snr_a.png").stat().st_size > 1000  # the per-SNR plot
    lines = [line for line in log.splitlines() if "group_by" in line]  # no set has kind or room: one line
    assert len(lines) == 1 and lines[0].startswith("warning: group_by kind, room:"), log
    assert "+group_columns.<column>=" in lines[0] and "snr" not in lines[0].split("(")[0]

    code, _, log = report("+sets.aliased=" + str(tmp_path / "aliased"), "group_columns=[x]", runs={"a": "cnn"})
    assert code == 2


def test_an_unconditional_run_has_one_row_and_threads_are_used(tmp_path, speech, report):
    make_set(tmp_path / "s", speech, {"snr": [0, 5, 0, 5]})
    code, out, log = report(f"+sets.s={tmp_path / 's'}", "guidance=[0,1,3]", "diagnostics.enabled=false",
                            "threads=2", "ref_seconds=0.5", runs={"cond": "cnn", "uncond": "none"})
    assert code == 0, log
    result = saved(out, "s")
    rows = [(s["labels"]["run"], s["labels"]["w"]) for s in result["systems"]]
    assert rows == [("cond", "0"), ("cond", "1"), ("cond", "3"), ("uncond", "0")]
    assert any("guidance has no effect" in note for s in result["systems"] for note in s["notes"])
    for table in (out / "s" / "comparison.md").read_text().split("###"):  # overall and per-SNR tables alike
        counts = [line.split("|")[1:3] for line in table.splitlines() if "| uncond |" in line]
        assert len(counts) == len({tuple(c) for c in counts}) >= 1  # one row per group label, never per w
    labels = [label for label, _ in spectrogram_columns(study.Study.from_config(
        cli.load_config("default", [f"+runs.cond={tmp_path / 'cond/checkpoints/last.ckpt'}",
                                    f"+runs.uncond={tmp_path / 'uncond/checkpoints/last.ckpt'}",
                                    f"+sets.s={tmp_path / 's'}", "guidance=[0,1,3]", f"out_dir={out}"])), "s")]
    assert labels == ["noisy", "cond w=3", "uncond (unconditional)", "clean", "reference (noise_ref)"]
    assert set(fake_enhance.threads) == {2}  # enhancement ran with the configured threads
    assert set(fake_enhance.ref_seconds) == {0.5}  # and the reference length the config sets
    assert "references: the centre 0.5 s of each reference file (set by the user" in (out / "report.md").read_text()
    code, _, _ = report(f"+sets.s={tmp_path / 's'}", "threads=0", runs={"cond": "cnn"})
    assert code == 2


def mixing_run(folder: Path, tiny_ckpt, speech_dir: Path, noise_dir: Path) -> Path:
    """A run folder as train.py leaves it for a dynamic-mixing row: its resolved config and a checkpoint."""
    cfg = compose_config(["experiment=mixing_cnn_cfg", "debug=tiny", f"paths.root_dir={folder}",
                          f"paths.output_dir={folder}", f"data.train.speech_dir={speech_dir}",
                          f"data.valid.speech_dir={speech_dir}", "data.train.length=6", "data.train.num_frames=32",
                          f"data.train.noise_dirs=[{{root: {noise_dir}, labels: subfolder, exclude_classes: [hiss]}}]"])
    (folder / "checkpoints").mkdir(parents=True)
    shutil.copy(tiny_ckpt, folder / "checkpoints" / "last.ckpt")
    (folder / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    return folder


def test_diagnostics_of_a_mixing_run_come_from_its_noise_pools(tmp_path, speech, report, tiny_ckpt):
    make_set(tmp_path / "s", speech, {"snr": [0, 5, 0, 5]})
    (tmp_path / "speech").mkdir()
    for i in range(3):
        sf.write(tmp_path / "speech" / f"sp{i}.wav", speech(1.2, f0=100.0 + 30 * i, seed=i).numpy(), SR)
    for cls in ("hum", "rumble", "hiss"):
        for i in range(2):
            (tmp_path / "noise" / cls).mkdir(parents=True, exist_ok=True)
            sf.write(tmp_path / "noise" / cls / f"{i}.wav",
                     0.05 * np.random.default_rng(i).standard_normal(2 * SR).astype(np.float32), SR)
    mixing_run(tmp_path / "mix", tiny_ckpt, tmp_path / "speech", tmp_path / "noise")
    code, out, log = report(f"+sets.s={tmp_path / 's'}", "guidance=[0,1]", "diagnostics.max_train=5",
                            runs={"mix": "cnn"})
    assert code == 0 and "Traceback" not in log and "diagnostics of run mix skipped" not in log, log
    scores = pd.read_csv(out / "diagnostics" / "mix" / "ood_scores.csv")
    assert sorted(scores["id"]) == ["u0", "u1", "u2", "u3"] and np.isfinite(scores["ood_score"]).all()
    stats = json.loads((out / "diagnostics" / "mix" / "embedding_stats.json").read_text())
    assert stats["train"]["n"] == 5  # five training examples of the run's own pools
    header = (out / "report.md").read_text().split("## s")[0]
    assert f"speech {tmp_path / 'speech'}" in header and f"{tmp_path / 'noise'} (exclude_classes hiss)" in header
    assert "references: the centre 0.25 s of each reference file (the checkpoint's ref_seconds, as trained)" in header

    # the run's data is not on this machine: one line naming why and the fix, the tables as before, exit 0
    shutil.rmtree(tmp_path / "speech")
    code, out, log = report(f"+sets.s={tmp_path / 's'}", "guidance=[0,1]", runs={"mix": "cnn"})
    lines = [line for line in log.splitlines() if "diagnostics" in line]
    assert code == 0 and len(lines) == 1 and "skipped" in lines[0] and "diagnostics.train_set=" in lines[0], log
    assert "Traceback" not in log and (out / "s" / "comparison.md").is_file()


def test_a_diagnostics_failure_is_one_error_line_and_a_non_zero_exit(tmp_path, speech, report, monkeypatch):
    make_set(tmp_path / "s", speech, {"snr": [0, 5, 0, 5]})
    (tmp_path / "r" / "checkpoints").mkdir(parents=True)
    (tmp_path / "r" / "checkpoints" / "last.ckpt").write_bytes(b"")  # the model cannot load: a real failure
    node = {"_target_": "sgmse_nc.data.paired.PairedFolderDataset", "root": str(tmp_path), "subset": "s"}
    (tmp_path / "r" / "config.yaml").write_text(OmegaConf.to_yaml({"seed": 1, "data": {"train": node}}))
    code, out, log = report(f"+sets.s={tmp_path / 's'}", "guidance=[0,1]", runs={"r": "cnn"})
    errors = [line for line in log.splitlines() if line.startswith("error:")]
    assert code == 1 and len(errors) == 1 and "diagnostics of run r failed" in errors[0], log
    assert "Traceback" not in log and (out / "s" / "comparison.md").is_file()
    assert f"data {tmp_path}/s," in (out / "report.md").read_text()  # a paired run's header names its folder


@pytest.mark.slow  # trains two tiny dynamic-mixing rows (train.py, debug=tiny) and runs the report: minutes on 2 cores
def test_end_to_end_on_tiny_mixing_runs_with_an_aliased_manifest(tmp_path, speech):
    import subprocess
    import sys

    from sgmse_nc.data.prepare.demo import ensure_demo_corpus
    from tests.helpers import REPO_ROOT

    demo = tmp_path / "demo"
    ensure_demo_corpus(demo, num_train=4, num_valid=2, num_test=3, seconds=[1.0, 1.5], noise_types=["white", "pink"])
    for cls in ("hum", "hiss"):
        for i in range(2):
            (tmp_path / "noise" / cls).mkdir(parents=True, exist_ok=True)
            sf.write(tmp_path / "noise" / cls / f"{i}.wav",
                     0.05 * np.random.default_rng(i).standard_normal(3 * SR).astype(np.float32), SR)
    runs = {}
    for name, encoder in (("mix", "cnn"), ("plain", "none")):
        runs[name] = tmp_path / name
        out = subprocess.run([sys.executable, "train.py", "experiment=mixing_cnn_cfg", "debug=tiny",
                              f"encoder={encoder}", f"hydra.run.dir={runs[name]}",
                              f"data.train.speech_dir={demo / 'train' / 'clean'}",
                              f"data.valid.speech_dir={demo / 'valid' / 'clean'}",
                              f"data.train.noise_dirs=[{{root: {tmp_path / 'noise'}, labels: subfolder}}]",
                              "data.train.length=4", "data.valid.length=2", "data.train.num_frames=32",
                              "data.valid.num_frames=32"], cwd=REPO_ROOT, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-3000:]
    test = shutil.copytree(demo / "test", tmp_path / "test")
    manifest = pd.read_csv(test / "manifest.csv").rename(columns={"snr": "snr_target_db",
                                                                  "noise_type": "noise_category"})
    manifest.to_csv(test / "manifest.csv", index=False)
    out = subprocess.run([sys.executable, "-m", "sgmse_nc.eval.report", *[f"+runs.{n}={p}" for n, p in runs.items()],
                          f"+sets.test={test}", "guidance=[0,1]", "sampler.N=1", "metrics=[si_sdr]",
                          "score_workers=0", "diagnostics.max_train=4", f"out_dir={tmp_path / 'rep'}"],
                         cwd=REPO_ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-3000:]
    result = saved(tmp_path / "rep", "test")
    assert [(s["labels"]["run"], s["labels"]["w"]) for s in result["systems"]] == [
        ("mix", "0"), ("mix", "1"), ("plain", "0")]
    assert result["group_by"] == ["snr", "category"] and (tmp_path / "rep" / "test" / "plot_snr_mix.png").is_file()
    header = (tmp_path / "rep" / "report.md").read_text().split("## test")[0]
    assert f"dynamic mixing of speech {demo / 'train' / 'clean'} with noise pools {tmp_path / 'noise'}" in header
    assert "the centre 0.25 s of each reference file (the checkpoint's ref_seconds, as trained)" in header
    scores = pd.read_csv(tmp_path / "rep" / "diagnostics" / "mix" / "ood_scores.csv")
    assert len(scores) == 3 and np.isfinite(scores["ood_score"]).all()


def test_paired_tables_compare_each_run_with_the_baseline_and_w_with_w0_pooling_seeds(tmp_path, speech, report,
                                                                                       monkeypatch):
    """report.md and <set>/paired.csv: every run × w against the `baseline` row and w against w = 0, runs named
    <row>_seed<k> pooled over their seeds, the values recomputed here from the cells' per-file scores."""
    def distorting_enhance(ckpt, noisy_dir, out_dir, options, ref_dir=None):  # each run × reference its own error
        rng = np.random.default_rng(abs(hash((str(ckpt), ref_dir is None))) % 2**32)
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        for path in Path(noisy_dir).glob("*.wav"):
            wav, sr = sf.read(path)
            sf.write(Path(out_dir) / path.name, wav + rng.uniform(0.001, 0.02) * rng.standard_normal(len(wav)), sr)
        return {}
    monkeypatch.setattr(enhancement, "enhance_folder", distorting_enhance)
    make_set(tmp_path / "s", speech, {"category": ["rain", "dog", "rain", "dog"]})
    runs = {"base_seed1": "none", "base_seed2": "none", "cfg_seed1": "cnn", "cfg_seed2": "cnn"}
    code, out, log = report(f"+sets.s={tmp_path / 's'}", "guidance=[0,1]", "diagnostics.enabled=false",
                            "baseline=base", runs=runs)
    assert code == 0, log

    def scores(run, cell):  # per-file SI-SDR of one cell, by id
        (path,) = (out / "work" / run / "s").glob(f"{cell}/eval/per_file.csv")
        return pd.read_csv(path).set_index("id")["si_sdr"]
    unconditional = lambda run: scores(run, "*")  # noqa: E731 - the one cell of an unconditional run
    rows = pd.read_csv(out / "s" / "paired.csv").set_index(["a", "b"])
    expected = {("cfg w=1", "base w=0"): [scores(f"cfg_seed{k}", "noise_ref_w1") - unconditional(f"base_seed{k}")
                                          for k in (1, 2)],
                ("cfg w=0", "base w=0"): [scores(f"cfg_seed{k}", "null_w0") - unconditional(f"base_seed{k}")
                                          for k in (1, 2)],
                ("cfg w=1", "cfg w=0"): [scores(f"cfg_seed{k}", "noise_ref_w1") - scores(f"cfg_seed{k}", "null_w0")
                                         for k in (1, 2)]}
    assert sorted(rows.index) == sorted(expected)
    for pair, per_seed in expected.items():
        row = rows.loc[pair]
        assert row["n_seeds"] == 2 and row["n_files"] == 4 and row["cluster_by"] == "category"
        assert row["mean"] == pytest.approx(pd.concat(per_seed, axis=1).mean(axis=1).mean(), abs=1e-9)
        assert row["seeds_low"] < row["mean"] < row["seeds_high"]
        assert abs(row["mean"]) > 1e-3  # the runs differ, so a swapped or self pair would show
    text = (out / "report.md").read_text()
    assert "### s: paired differences" in text and "| cfg w=1 | base w=0 (baseline base) |" in text
    assert "cluster-robust" in text

    code, _, log = report(f"+sets.s={tmp_path / 's'}", "baseline=nope", "diagnostics.enabled=false", runs=runs)
    assert code == 2 and "error: baseline=nope: not one of the runs" in log, log
