"""Every option value a user can type gets one `error:` line and exit status 2 (never a traceback): a rule walked
over every choice and number option of the argparse commands (their parsers introspected), every config group
of train.py, and the values only the machine or the checkpoint can refuse (device, sampler vs SDE), through the
entry points."""
from __future__ import annotations

import argparse
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from sgmse_nc.cli import Number
from sgmse_nc.config import CONFIG_DIR, check_overrides
from sgmse_nc.errors import OptionError
from tests.helpers import REPO_ROOT


def commands():
    """(name, entry function, parser, arguments before the options) for every argparse command."""
    from sgmse_nc.data.prepare import cli as prepare, demo
    from sgmse_nc.enhance import cli as enhance
    from sgmse_nc.eval import evaluate
    from sgmse_nc.study import cli as study

    found = [("enhance", enhance.main, enhance.build_parser(), []),
             ("evaluate", evaluate.main, evaluate.build_parser(), []),
             ("demo", demo.main, demo.build_parser(), []),
             ("study", study.main, study.build_parser(), [])]
    sub = next(a for a in prepare.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    found += [(f"prepare {name}", prepare.main, parser, [name]) for name, parser in sub.choices.items()]
    return found


def value_options(parser):
    return [a for a in parser._actions if a.option_strings and (a.choices is not None or a.type is not None)]


HUGE = 10**12  # beyond every option's range: refused at start, never a run that overflows or never ends


def number_bad_values(number: Number) -> list:
    """What a user may type into a number option that its range refuses: a non-number, NaN/Inf or a fraction,
    0 and a negative where they are out of range, just below and just above the range, and a huge value."""
    values = ["abc", "nan", "inf", "-inf"] if number.kind is float else ["abc", "1.5", "nan"]
    values += [v for v in ("0", "-1") if not number.allows(float(v))]
    if number.low is not None:  # (every option has both bounds: test_every_number_option_states_its_range)
        values.append(str(number.low) if number.low_open else str(number.kind(number.low - 1)))
    if number.high is not None:
        values.append(str(number.kind(number.high + 1)))
    values += [str(HUGE), str(-HUGE)]
    return list(dict.fromkeys(values))


def bad_values(action) -> list[str]:
    if action.choices is not None:
        return ["not-a-choice", "7"]
    if isinstance(action.type, Number):
        return number_bad_values(action.type)
    return []


def required_arguments(parser, leave_out) -> list[str]:
    args = []
    for action in parser._actions:
        if action.required and action.option_strings and action is not leave_out:
            args += [action.option_strings[0], "somewhere"]
    return args


CASES = [(name, entry, prefix + required_arguments(parser, action), action, value)
         for name, entry, parser, prefix in commands() for action in value_options(parser)
         for value in bad_values(action)]


def test_every_number_option_states_its_range():
    """A bare int/float type accepts 0, -1, nan: every number option uses cli.Number with its range."""
    bare = [f"{name} {a.option_strings[0]}" for name, _, parser, _ in commands() for a in parser._actions
            if a.type in (int, float)]
    assert not bare, f"number options without a range (use sgmse_nc.cli.Number): {bare}"
    unbounded = [f"{name} {a.option_strings[0]}" for name, _, parser, _ in commands() for a in parser._actions
                 if isinstance(a.type, Number) and a.choices is None and (a.type.low is None or a.type.high is None)]
    assert not unbounded, f"number options without a lower and an upper bound: {unbounded}"
    assert len({(c[0], c[3].dest) for c in CASES}) >= 40  # the walk covers the commands' options


@pytest.mark.parametrize("name, entry, args, action, value", CASES,
                         ids=[f"{c[0]} {c[3].option_strings[0]} {c[4]}" for c in CASES])
def test_bad_option_value_is_one_error_line(name, entry, args, action, value, capsys):
    nargs = action.nargs if isinstance(action.nargs, int) else 1
    with pytest.raises(SystemExit) as stop:
        entry([*args, action.option_strings[0], *[value] * nargs])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert stop.value.code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert action.option_strings[0] in lines[0] and "Traceback" not in err


def report_numbers(node, prefix="") -> list[str]:
    """The keys of conf/report/default.yaml that hold a number (or may: the keys left null), lists included."""
    from omegaconf import OmegaConf

    keys = []
    for key, value in (node.items() if isinstance(node, dict) else []):
        if isinstance(value, dict):
            keys += report_numbers(value, f"{prefix}{key}.")
        elif isinstance(value, (int, float)) and not isinstance(value, bool) or (
                isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value)):
            keys.append(prefix + key)
    return keys


REPORT_NULL_NUMBERS = ["batch_size", "sampler.N", "ref_seconds"]  # null in the file (the model's own), numbers when given


def test_every_report_number_is_checked_at_start(tmp_path):
    """The report's config (Hydra, not argparse) under the same rule: each number key, with the values the
    command-line rule uses, is refused by the start-up check with one line naming the key."""
    from omegaconf import OmegaConf

    from sgmse_nc.cli import GUIDANCE
    from sgmse_nc.eval.report.study import NUMBERS, check_guidance, check_values

    default = OmegaConf.load(CONFIG_DIR / "report" / "default.yaml")
    keys = report_numbers(OmegaConf.to_container(default)) + REPORT_NULL_NUMBERS
    assert "guidance" in keys and "diagnostics.k" in keys and "score_workers" in keys
    assert set(keys) - {"guidance"} <= set(NUMBERS), f"report numbers without a range: {set(keys) - set(NUMBERS)}"
    for key in set(keys) - {"guidance"}:
        for text in number_bad_values(NUMBERS[key]):
            cfg = OmegaConf.merge(default, OmegaConf.from_dotlist([f"{key}={text}"]))
            with pytest.raises(OptionError, match=f"^{key}="):
                check_values(cfg, [], {})
        check_values(OmegaConf.merge(default, OmegaConf.from_dotlist([f"{key}={NUMBERS[key].high}"])), [], {})
    for text in number_bad_values(GUIDANCE) + ["[]", "3"]:
        value = OmegaConf.from_dotlist([f"guidance=[{text}]" if text not in ("[]", "3") else f"guidance={text}"])
        with pytest.raises(OptionError, match="^guidance="):
            check_guidance(value.guidance)
    check_guidance(default.guidance)


def test_every_config_group_choice_is_checked():
    groups = sorted({p.parent.relative_to(CONFIG_DIR).as_posix() for p in CONFIG_DIR.rglob("*.yaml")} - {"."})
    assert {"sampler", "sde", "trainer", "experiment", "backbone", "encoder"} <= set(groups)
    for group in groups:
        with pytest.raises(OptionError, match=f"no conf/{group}/nonexistent.yaml; choose one of"):
            check_overrides([f"{group}=nonexistent"])
        with pytest.raises(OptionError, match="nonexistent"):  # each job of a sweep
            check_overrides(["-m", f"{group}={next((CONFIG_DIR / group).glob('*.yaml')).stem},nonexistent"])
    check_overrides(["sampler=ode", "trainer.max_steps=3"])  # good ones pass


# ---- through the entry points (subprocess), as the battery does ----------------------------------------------

def run(*args, cwd=REPO_ROOT):
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True)


def one_error_line(out) -> str:
    lines = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode == 2 and len(lines) == 1 and "Traceback" not in out.stderr, out.stderr[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def sb_ckpt(tmp_path_factory):
    """A Schrödinger-bridge checkpoint (its samplers: dpm, sb_sde) and one noisy file."""
    import pytorch_lightning as pl

    from sgmse_nc.config import build_model_from_config

    root = tmp_path_factory.mktemp("sb")
    model = build_model_from_config(["backbone=ncsnpp_tiny", "encoder=none", "sde=sb", "sampler=sb"])
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams), "global_step": 1,
                "pytorch-lightning_version": pl.__version__, "ema": model.ema.state_dict()}, root / "sb.ckpt")
    (root / "noisy").mkdir()
    sf.write(root / "noisy" / "a.wav", 0.1 * np.random.default_rng(0).standard_normal(16000), 16000)
    return root


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_enhance_device_without_cuda_names_what_is_available(sb_ckpt):
    out = run("enhance.py", "--ckpt", sb_ckpt / "sb.ckpt", "--noisy", sb_ckpt / "noisy", "--out",
              sb_ckpt / "out", "--device", "cuda")
    line = one_error_line(out)
    assert "--device cuda" in line and "available here: cpu" in line
    assert "--device gpu: not a device name" in one_error_line(run(
        "enhance.py", "--ckpt", sb_ckpt / "sb.ckpt", "--noisy", sb_ckpt / "noisy", "--out", sb_ckpt / "out",
        "--device", "gpu"))
    assert not (sb_ckpt / "out").exists()


def test_enhance_sampler_the_checkpoint_lacks_names_its_samplers(sb_ckpt):
    from sgmse_nc.diffusion.sampling import SAMPLERS

    # the samplers the registry defines for the bridge (dpm, sb_sde, sb_ode, ... as samplers are added)
    usable = sorted(n for n, s in SAMPLERS.items() if s.sdes is None or "sb" in s.sdes)
    assert "pc" not in usable and "dpm" in usable
    for sampler in ("pc", "ode", "heun"):
        line = one_error_line(run("enhance.py", "--ckpt", sb_ckpt / "sb.ckpt", "--noisy", sb_ckpt / "noisy",
                                  "--out", sb_ckpt / "out", "--sampler", sampler))
        assert f"--sampler {sampler}" in line and str(usable) in line and "sde=sb" in line.replace(
            "SDE is sb", "sde=sb")
    line = one_error_line(run("enhance.py", "--ckpt", sb_ckpt / "sb.ckpt", "--noisy", sb_ckpt / "noisy",
                              "--out", sb_ckpt / "out", "--snr", "0.3"))
    assert "--snr 0.3" in line and "has no option(s) ['snr']" in line
    assert not (sb_ckpt / "out").exists()


@pytest.mark.slow
def test_report_device_and_sampler_are_checked_at_start(sb_ckpt):
    base = ["-m", "sgmse_nc.eval.report", f"+runs.sb={sb_ckpt / 'sb.ckpt'}", f"+sets.s={sb_ckpt}",
            f"out_dir={sb_ckpt / 'report'}", "guidance=[0]"]
    (sb_ckpt / "clean").mkdir(exist_ok=True)
    sf.write(sb_ckpt / "clean" / "a.wav", np.zeros(16000), 16000)
    (sb_ckpt / "manifest.csv").write_text("id\na\n")
    assert "sampler.name=pc" in one_error_line(run(*base, "sampler.name=pc"))
    if not torch.cuda.is_available():
        assert "device=cuda" in one_error_line(run(*base, "device=cuda"))
    assert "batch_size=0" in one_error_line(run(*base, "batch_size=0"))


@pytest.mark.slow
def test_train_option_values_through_the_entry_point(tmp_path):
    common = ["train.py", "experiment=demo", f"paths.root_dir={tmp_path}", f"paths.data_dir={tmp_path}/data",
              "+data.prepare.num_train=2", "+data.prepare.num_valid=1", "+data.prepare.num_test=1",
              "trainer.max_steps=1"]
    cases = {"sampler=nonexistent": "no conf/sampler/nonexistent.yaml", "threads=0": "threads=0",
             "sampler=pc": "sampler 'pc' is not defined for sde=sb", "trainer.precision=17": "Precision 17",
             "model.lr=-1": "model.lr=-1", "data.batch_size=0": "data.batch_size=0",
             "+trainer.nonsense=1": "unexpected keyword argument 'nonsense'"}
    if not torch.cuda.is_available():
        cases["trainer.accelerator=gpu"] = "available here: cpu"
    for override, expected in cases.items():
        assert expected in one_error_line(run(*common, override)), override
    assert not list(tmp_path.rglob("*.ckpt"))


def test_pause_reference_length_is_checked_by_the_library():
    """The report and the Python API reach enhance_folder without the command's parser: the library refuses a
    pause reference too short for one STFT window (it ended in torch's padding error) with the option's name."""
    from sgmse_nc.enhance.folder import EnhanceOptions

    for bad in (0.0, 0.01, float("nan"), float("inf")):
        with pytest.raises(OptionError, match="^`ref_seconds="):
            EnhanceOptions(ref_strategy="from_noisy_pauses", ref_seconds=bad).check(None)
    assert EnhanceOptions(ref_strategy="from_noisy_pauses", ref_seconds=0.1).check(None) == "from_noisy_pauses"


def test_evaluate_refuses_wide_band_pesq_below_16k(tmp_path):
    """PESQ only upsamples: --sample-rate 8000 (or clean files at 8 kHz) with wide-band PESQ ended in pesq's
    ValueError traceback; now one line naming --pesq-mode nb, before any file is scored."""
    for rate, folder in ((16000, "clean16"), (8000, "clean8")):
        (tmp_path / folder).mkdir()
        sf.write(tmp_path / folder / "a.wav", 0.1 * np.random.default_rng(0).standard_normal(rate), rate)
    cases = [("clean16", "--sample-rate", "8000"), ("clean16", "--sample-rate", "12000"), ("clean8",)]
    for folder, *extra in cases:
        out = tmp_path / f"eval_{folder}_{len(extra)}"
        line = one_error_line(run("evaluate.py", "--enhanced", tmp_path / folder, "--clean", tmp_path / folder,
                                  "--out", out, *extra))
        assert "pesq needs audio at 16000 Hz" in line and "--pesq-mode nb" in line, line
        assert not (out / "per_file.csv").exists()
    two = ["--enhanced", f"a={tmp_path / 'clean16'}", f"b={tmp_path / 'clean16'}"]  # the comparison path
    line = one_error_line(run("evaluate.py", *two, "--clean", tmp_path / "clean16", "--out", tmp_path / "cmp",
                              "--sample-rate", "8000"))
    assert "--pesq-mode nb" in line
    done = run("evaluate.py", "--enhanced", tmp_path / "clean8", "--clean", tmp_path / "clean8", "--out",
               tmp_path / "nb", "--pesq-mode", "nb", "--no-plot")
    assert done.returncode == 0 and (tmp_path / "nb" / "per_file.csv").is_file(), done.stderr[-2000:]
