"""Every ```bash block of README.md and of the docs it links runs as written, or says what it needs.

Each command of a block (a line, with its `\\` continuations; a `for ... done` loop is one command) is one of:

  run       runs on the demo corpus or on a fake layout of the paths it names (the fakes of the builders'
            tests: a VoiceBank-DEMAND, ESC-50, EARS-WHAM release; speech and noise folders): the block runs in
            a temporary folder with the commands on the PATH, trainings with `debug=tiny` appended (and
            enhancement with `--N 2`), and must exit 0 and write what it promises (`--out`, `--dst`, a run
            folder's last.ckpt);
  needs     needs what a test cannot have (real weights, a published checkpoint, a GPU, a cluster, a package
            from the registry): its block or the text right above it names the key or path to give;
  usage     a synopsis (`[--option ...]`): every option it shows is one the command takes;
  make      a Makefile target: `make -n` knows it (and `make demo` runs the README's three lines);
  suite     this test suite itself (`pytest -m slow`): the marker exists.

A command that is none of these fails, naming its file and line. Blocks that train or enhance are slow."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest's own dependency
    import tomli as tomllib

from tests.helpers import (
    REPO_ROOT,
    TRAIN_LOG,
    documentation_files,
    fenced_blocks,
    make_ears_wham_release,
    make_esc50,
    make_release,
    synthetic_corpora,
)

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
SCRIPTS = PYPROJECT["project"]["scripts"]
ROOT_SCRIPTS = {"train.py": "sgmse-train", "enhance.py": "sgmse-enhance", "evaluate.py": "sgmse-evaluate"}

# Appended to a command that trains or enhances, so that it runs in seconds on a CPU (conf/debug/tiny.yaml).
TINY_TRAIN = "debug=tiny"
TINY_DEMO_CORPUS = "+data.prepare.num_train=4 +data.prepare.num_valid=2 +data.prepare.num_test=3"
TINY_ENHANCE = "--N 2"
TINY_STUDY = "--scale smoke --seeds 1"  # one seed: the block's second line asks three
TINY_BENCH = {"bench/eval_throughput.py": "--files 4 --workers 1"}
# a fake VoiceBank-DEMAND log whose training noise labels each have two utterances or more (as in the release)
RECIPE_TRAIN_LOG = {**TRAIN_LOG, "p250_004": ("white", 10.0), "p250_005": ("babble", 0.0), "p250_006": ("cafe", 5.0)}


# ---- what each command needs ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Need:
    """Something a test cannot have: `when` finds the commands that need it; each of `names` (what the user
    must give) has to appear in the command's block or in the text right above it."""
    what: str
    when: str
    names: tuple[str, ...]


NEEDS = (
    Need("a SLURM cluster", r"hydra/launcher=slurm", (r"hydra\.launcher\.partition=\S+",)),
    Need("a pre-trained tower's weight file", r"experiment=(clap|panns)\w*|--encoder-weights",
         (r"encoder\.weights=/\S+|--encoder-weights /\S+",)),
    Need("a published SGMSE+ checkpoint", r"init_from_sgmse=", (r"init_from_sgmse=/\S+\.ckpt",)),
    Need("the runs and sets of the full study on a GPU", r"sgmse-report study\b",
         (r"runs\.\w+=outputs/\S+", r"sets\.\w+=data/\S+", r"device=cuda")),
    Need("an export of the reference sp-uhh/sgmse", r"sgmse_ref", (r"sp-uhh/sgmse", r"/tmp/sgmse_ref")),
    Need("a desktop session with a browser", r"\bxdg-open\b", (r"xdg-open \S+\.html",)),
    Need("the dnsmos extra from the package registry", r"--dnsmos|pip install",
         (r'pip install -e "\.\[dnsmos\]"',)),
)


# ---- parsing -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Command:
    text: str    # the command as a shell runs it (continuations joined, the trailing comment removed)
    where: str   # file:line
    block: object

    @property
    def words(self) -> list[str]:
        return shlex.split(self.text, comments=True)


def strip_comment(line: str) -> str:
    """The line without a trailing `# comment` (a `#` after a space, outside quotes)."""
    quote = None
    for k, char in enumerate(line):
        if char in "'\"" and quote in (None, char):
            quote = None if quote else char
        elif char == "#" and quote is None and (k == 0 or line[k - 1] in " \t"):
            return line[:k].rstrip()
    return line.rstrip()


def commands(block) -> list[Command]:
    """The block's commands: its lines with their `\\` continuations joined, a `for ... done` loop as one."""
    logical, pending = [], []  # (first line, text)
    for k, raw in enumerate(block.text.splitlines()):
        line = strip_comment(raw)
        if not line.strip() and not pending:
            continue
        pending.append((k, line.removesuffix("\\").strip()))
        if not line.endswith("\\"):
            logical.append((pending[0][0], " ".join(part for _, part in pending)))
            pending = []
    out, loop, depth = [], [], 0
    for k, line in logical:
        words = line.replace(";", " ; ").split()
        depth += words.count("do") - words.count("done")
        loop.append((k, line))
        if depth <= 0:
            out.append(Command("\n".join(text for _, text in loop), f"{block.path.relative_to(REPO_ROOT)}:"
                               f"{block.line + loop[0][0]}", block))
            loop, depth = [], 0
    return out


BLOCKS = [b for path in documentation_files() for b in fenced_blocks(path, "bash")]
COMMANDS = [c for b in BLOCKS for c in commands(b)]
PROGRAMS = r"(?:(?:\.venv/bin/)?(?:sgmse-\w+|python3?)|make)"


def program(command: Command) -> str:
    """sgmse-train / make / python / ... (the root scripts and `python -m` forms named as their command)."""
    words = command.words
    if not words:
        return ""
    if words[0] in ("for", "while"):
        return "loop"
    if re.fullmatch(r"[A-Z_]+=\S*", words[0]):
        return "assignment"
    name = words[0].removeprefix(".venv/bin/")
    if name in ("python", "python3") and len(words) > 1:
        if words[1] in ROOT_SCRIPTS:
            return ROOT_SCRIPTS[words[1]]
        if words[1] == "-m" and words[2] == "pytest":
            return "pytest"
        if words[1] == "-m":
            return next((s for s, target in SCRIPTS.items() if target.split(":")[0].startswith(words[2])), words[2])
        return words[1]  # a script, e.g. bench/eval_throughput.py
    return name


def kind(command: Command) -> str:
    text, name = command.text, program(command)
    if any(re.search(need.when, text) for need in NEEDS):
        return "needs"
    if name == "make":
        return "make"
    if name == "pytest":
        return "suite"
    if "[--" in text:
        return "usage"
    if name in SCRIPTS or name in ("loop", "assignment") or name in TINY_BENCH:
        return "run"
    return "unknown"


# ---- the fast checks ---------------------------------------------------------------------------------------

def test_the_blocks_are_found():
    """The parser sees the README's and the docs' blocks (a broken parser would check nothing)."""
    files = {c.where.split(":")[0] for c in COMMANDS}
    assert {"README.md", "docs/data.md", "docs/training.md", "docs/evaluation.md"} <= files
    assert len(COMMANDS) >= 30 and any("for snr in" in c.text for c in COMMANDS)


def test_every_command_runs_here_or_names_what_it_needs():
    unknown = [f"{c.where}: {c.text.splitlines()[0][:80]}" for c in COMMANDS if kind(c) == "unknown"]
    assert not unknown, ("commands that neither run on the demo corpus / a fake layout nor name what they need "
                         "(add the key or path they need, or teach tests/commands/test_doc_recipes.py to run "
                         "them): " + "; ".join(unknown))
    missing = []
    for command in (c for c in COMMANDS if kind(c) == "needs"):
        where = command.block.text + "\n" + command.block.above
        for need in (n for n in NEEDS if re.search(n.when, command.text)):
            missing += [f"{command.where}: needs {need.what}, but names no {name!r}"
                        for name in need.names if not re.search(name, where)]
    assert not missing, "; ".join(missing)


def help_text(name: str) -> str:
    module, function = SCRIPTS[name].split(":")
    code = f"import sys; from {module} import {function}; sys.exit({function}())"
    out = subprocess.run([sys.executable, "-c", code, "--help"], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.mark.parametrize("command", [c for c in COMMANDS if kind(c) == "usage"], ids=lambda c: c.where)
def test_a_synopsis_shows_only_options_the_command_takes(command):
    usage = help_text(program(command))
    unknown = [flag for flag in re.findall(r"(?<![\w-])--[a-z][\w-]*", command.text) if flag not in usage]
    assert not unknown, f"{command.where}: {program(command)} has no option {', '.join(unknown)}"


@pytest.mark.parametrize("command", [c for c in COMMANDS if kind(c) in ("make", "suite")], ids=lambda c: c.where)
def test_make_targets_and_the_suite_exist(command, tmp_path):
    if kind(command) == "suite":
        markers = [m.split(":")[0] for m in PYPROJECT["tool"]["pytest"]["ini_options"]["markers"]]
        options = command.words[command.words.index("pytest") + 1:]
        selected = options[options.index("-m") + 1] if "-m" in options else None
        assert selected is None or selected in markers, f"{command.where}: no pytest marker {selected!r}"
        return
    for name in ("Makefile", "pyproject.toml"):
        (tmp_path / name).symlink_to(REPO_ROOT / name)
    target = command.words[1]
    out = subprocess.run(["make", "-n", target], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, f"{command.where}: make {target}: {out.stderr[-1000:]}"
    if target == "demo":  # the README: "`make demo` runs these three lines"
        index = next(k for k, b in enumerate(BLOCKS) if b is command.block)
        made = " ".join(out.stdout.replace("\\\n", " ").split())
        for line in commands(BLOCKS[index + 1]):
            assert " ".join(line.text.split()) in made, f"{line.where}: make demo does not run {line.text!r}"


# ---- running the blocks ------------------------------------------------------------------------------------

def trains(command: Command) -> bool:
    return bool(re.search(r"\bsgmse-(train|study|enhance|report)\b|\b(train|enhance)\.py\b|bench/", command.text))


def tiny(command: Command) -> str:
    """The command with the tiny settings appended to every line that trains, enhances or measures."""
    lines = []
    for line in command.text.split("\n"):
        if re.search(r"\bsgmse-train\b|\btrain\.py\b", line):
            demo = "experiment=demo" in line
            line += (f" {TINY_TRAIN}" if TINY_TRAIN not in line else "") + (f" {TINY_DEMO_CORPUS}" if demo else "")
        elif re.search(r"\bsgmse-enhance\b|\benhance\.py\b", line):
            line = f"{line} {TINY_ENHANCE}"
        elif re.search(r"\bsgmse-study\b", line):
            line = f"{line} {TINY_STUDY}"
        for script, settings in TINY_BENCH.items():
            if script in line:
                line = f"{line} {settings}"
        lines.append(line)
    return "\n".join(lines)


def promises(command: Command) -> list[str]:
    """What a command says it writes (paths relative to the block's folder): its output folders, and a
    training's last.ckpt."""
    words, out = command.words, []
    for flag in ("--out", "--dst"):
        if flag in words and "$" not in words[words.index(flag) + 1]:
            out.append(words[words.index(flag) + 1])
    for word in words:
        key, _, value = word.partition("=")
        if key in ("out_dir", "hydra.run.dir") and "$" not in value:
            out.append(value + ("/checkpoints/last.ckpt" if key == "hydra.run.dir" else ""))
    if program(command) == "sgmse-train" and not any(p.endswith("last.ckpt") for p in out):
        experiments = next((w.split("=", 1)[1] for w in words if w.startswith("experiment=")), "")
        out += [f"outputs/{row}/**/last.ckpt" for row in experiments.split(",") if row]
    return out


def shims(folder: Path) -> dict:
    """Every console script (and python) as a small script running this checkout's code; the env to run in."""
    bin_dir = folder / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name, target in SCRIPTS.items():
        module, function = target.split(":")
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -c "import sys; from {module} import {function}; '
                          f'sys.exit({function}())" "$@"\n')
        script.chmod(0o755)
    for name in ("python", "python3"):  # a script, not a link: a link outside the venv would lose its packages
        (bin_dir / name).write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        (bin_dir / name).chmod(0o755)
    for name in ("conf", "bench", "Makefile", "pyproject.toml", *ROOT_SCRIPTS):
        (folder / name).symlink_to(REPO_ROOT / name)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", PYTHONPATH=str(REPO_ROOT),
               MPLBACKEND="Agg")
    return env


def fake_layout(block_text: str, folder: Path, tiny_ckpt: Path) -> str:
    """Builds what the block reads and does not make itself; returns the block with /corpora/ moved into
    `folder`."""
    rng = np.random.default_rng(0)
    corpora = folder / "corpora"
    made = set(re.findall(r"--(?:dst|out) (\S+)", block_text)) | set(re.findall(r"hydra\.run\.dir=(\S+)", block_text))

    def needed(path: str) -> bool:
        return path in block_text and not any(path.startswith(m) or m.startswith(path) for m in made)

    if "/corpora/DS_10283_2791" in block_text:  # every training noise label on two utterances at least, as
        make_release(corpora / "DS_10283_2791", train_log=RECIPE_TRAIN_LOG)  # same_noise_type needs
    if "/corpora/ESC-50-master" in block_text:
        make_esc50(corpora / "ESC-50-master", rng)
    if "/corpora/EARS-WHAM" in block_text:
        make_ears_wham_release(corpora, rng)
    from sgmse_nc.audio import write_audio
    from sgmse_nc.data.synthetic import speech_like

    for split in ("train", "valid"):
        if f"/corpora/speech/{split}" in block_text:
            for k in range(3):
                write_audio(corpora / "speech" / split / f"s{k}.wav", speech_like(2 * 16000, rng), 16000)
    for pool in ("DEMAND/DKITCHEN", "DEMAND/STRAFFIC", "wham_noise/tr"):
        if "/corpora/" + pool.split("/")[0] in block_text:
            write_audio(corpora / pool / "ch01.wav", 0.05 * rng.standard_normal(8 * 16000).astype(np.float32), 16000)
    if needed("data/vbdmd") or needed("data/esc50_ood") or (
            re.search(r"\bsgmse-train\b", block_text) and "--dst data/vbdmd" not in block_text):
        synthetic_corpora(folder / "data", corpora=("vbdmd",))  # what the rows read (data=vbdmd)
    if needed("data/ears_wham"):
        synthetic_corpora(folder / "data", corpora=("ears_wham",))  # a 48 kHz corpus in the same layout
    if needed("data/esc50_ood"):
        from sgmse_nc.data.prepare.esc50 import build_esc50

        build_esc50(make_esc50(folder / "esc50_src", rng), folder / "data/vbdmd/test/clean", folder / "data/esc50_ood",
                    snrs=(0, 5, 10), seed=0, progress=False)
    # runs the block enhances with but does not train (the study's runs): a tiny checkpoint in their place
    for row in set(re.findall(r"outputs/([\w.]+)/default/checkpoints", block_text)) | (
            set(re.findall(r"experiment=([\w.,]+)", block_text)[0].split(",")) if "/default/checkpoints" in
            block_text else set()):
        (folder / "outputs" / row / "default" / "checkpoints").mkdir(parents=True, exist_ok=True)
        shutil.copy(tiny_ckpt, folder / "outputs" / row / "default" / "checkpoints" / "last.ckpt")
    if re.search(r"--ckpt CKPT\b", block_text):
        block_text = re.sub(r"--ckpt CKPT\b", f"--ckpt {tiny_ckpt}", block_text)
    # a demo run the block uses but does not train: made as the README's quick start makes it
    if "experiment=demo" not in block_text and (needed("outputs/demo/quickstart") or needed("data/demo")):
        run_dir = "outputs/demo/quickstart"
        block_text = (f"sgmse-train experiment=demo hydra.run.dir={run_dir} ckpt_path=auto {TINY_TRAIN} "
                      f"{TINY_DEMO_CORPUS}\n") + block_text
    if "enh/base" in block_text:  # a test set and enhanced folders, as the evaluation examples name them
        from sgmse_nc.data.prepare.demo import ensure_demo_corpus

        ensure_demo_corpus(folder / "demo", num_train=2, num_valid=2, num_test=3, seconds=[1.0, 1.2])
        shutil.copytree(folder / "demo" / "test", folder / "test")
        for name in re.findall(r"=enh/(\w+)", block_text):
            shutil.copytree(folder / "test" / "noisy", folder / "enh" / name)
    return block_text.replace("/corpora/", f"{corpora}/")


RUNNABLE = [b for b in BLOCKS if any(kind(c) == "run" for c in commands(b))]


def block_id(block) -> str:
    return f"{block.path.relative_to(REPO_ROOT)}:{block.line}"


@pytest.mark.parametrize("block", [pytest.param(b, marks=[pytest.mark.slow] * any(trains(c) for c in commands(b)),
                                                id=block_id(b)) for b in RUNNABLE])
def test_the_block_runs_as_written(block, tmp_path, tiny_ckpt):
    """The block's runnable commands in order (those that need what a test cannot have left out), in a fresh
    folder laid out as they expect, with the tiny settings appended: exit 0 and what each promises."""
    env = shims(tmp_path)
    runnable = [c for c in commands(block) if kind(c) == "run"]
    script = fake_layout("\n".join(tiny(c) for c in runnable) + "\n", tmp_path, tiny_ckpt)
    (tmp_path / "block.sh").write_text("set -euo pipefail\n" + script)
    out = subprocess.run(["bash", "block.sh"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=3000)
    assert out.returncode == 0, f"{block_id(block)} failed:\n{script}\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}"
    for command in runnable:
        for promised in promises(command):
            found = [p for p in tmp_path.glob(promised) if p.is_file() or any(p.iterdir())]
            assert found, f"{command.where}: {command.text!r} did not write {promised}"
