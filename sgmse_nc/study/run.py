"""The miniature study on the embedded demo corpus (see the package docstring).

    <out>/data/demo/               training classes: train / valid / test (the in-distribution set)
    <out>/data/demo_unseen/        the unseen classes: its test/ is the unseen-noise set
    <out>/data/nonstationary/snr_5/  non-stationary noise over the in-distribution test speech (5 dB)
    <out>/runs/<row>/seed<s>/      one training run per row and seed (rerun: resumes from last.ckpt)
    <out>/report/                  the run-level report (report.md, <set>/comparison.*)
    <out>/report/<set>/paired.*    each run x w against the baseline row and w against w = 0, 95% intervals
    <out>/study.md                 what was run, and the paired tables of every set

Matched runs: every row of one seed starts from the same backbone weights and sees the same examples
(sgmse_nc.seeds), so the paired differences measure the rows, not their seeds.
"""
from __future__ import annotations

import logging
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from sgmse_nc.data.prepare.demo import make_demo_corpus
from sgmse_nc.data.prepare.nonstationary import build_nonstationary
from sgmse_nc.data.synthetic import NOISES
from sgmse_nc.errors import UserError
from sgmse_nc.io import write_text_atomic

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[2]

# The rows of the matrix, as overrides of the demo experiment (what each row studies, nothing else).
ROWS = {"sgmse_baseline": ["encoder=none", "model.cond_drop_prob=0.0"],
        "nc_baseline": ["encoder=cnn", "model.cond_drop_prob=0.0"],
        "cfg_p0.2": ["encoder=cnn", "model.cond_drop_prob=0.2"]}
BASELINE = "sgmse_baseline"
# How big: the demo corpus and steps per scale (smoke: the end-to-end test; cpu: meant to take about 30 minutes on
# 2 cores for the default rows and seeds, not yet timed; poc, paper: GPUs, not yet run).
SCALES = {
    "smoke": {"corpus": dict(num_train=8, num_valid=2, num_test=3), "train": [
        "trainer.max_steps=3", "data.batch_size=4", "data.num_eval_files=0", "data.train.num_frames=32",
        "trainer.check_val_every_n_epoch=1000", "sampler.N=2"], "report": ["sampler.N=2"]},
    "cpu": {"corpus": dict(num_train=120, num_valid=8, num_test=12), "train": [
        "trainer.max_steps=150", "trainer.max_epochs=-1", "data.num_eval_files=0",
        "trainer.check_val_every_n_epoch=1000"], "report": []},
    "poc": {"corpus": dict(num_train=200, num_valid=20, num_test=20), "train": [
        "scale=poc", "backbone=ncsnpp", "data.num_eval_files=4"], "report": ["device=cuda"]},
    "paper": {"corpus": dict(num_train=200, num_valid=20, num_test=20), "train": [
        "scale=paper", "backbone=ncsnpp", "data.num_eval_files=4"], "report": ["device=cuda"]},
}
UNSEEN = ("brown", "hum", "impulsive")  # held out of training by default: the unseen-noise set


class StudyError(UserError, ValueError):
    """A bad study option; the message names it and the values it accepts."""


@dataclass
class StudyPlan:
    out: Path
    rows: list[str] = field(default_factory=lambda: [BASELINE, "cfg_p0.2"])
    seeds: list[int] = field(default_factory=lambda: [1, 2])
    scale: str = "cpu"
    guidance: list[float] = field(default_factory=lambda: [0.0, 1.0, 3.0])
    unseen: list[str] = field(default_factory=lambda: list(UNSEEN))
    threads: str = "1"

    def __post_init__(self):
        self.out = Path(self.out).resolve()  # the trainings run from the checkout, not from where we started
        unknown = [r for r in self.rows if r not in ROWS]
        if unknown or not self.rows:
            raise StudyError(f"--rows {' '.join(unknown) or '(none)'}: choose from {', '.join(ROWS)}.")
        if self.scale not in SCALES:
            raise StudyError(f"--scale {self.scale}: choose from {', '.join(SCALES)}.")
        bad = [c for c in self.unseen if c not in NOISES]
        if bad or not self.unseen or set(self.unseen) >= set(NOISES):
            raise StudyError(f"--unseen {' '.join(self.unseen)}: name some (not all) of {', '.join(NOISES)}.")

    @property
    def train_classes(self) -> list[str]:
        return [n for n in NOISES if n not in self.unseen]

    def run_dir(self, row: str, seed: int) -> Path:
        return self.out / "runs" / row / f"seed{seed}"


def build_sets(plan: StudyPlan) -> dict[str, Path]:
    """The training corpus (training classes) and the three test sets; each builder skips finished work."""
    corpus = dict(SCALES[plan.scale]["corpus"])
    data = plan.out / "data"
    make_demo_corpus(data / "demo", noise_types=tuple(plan.train_classes), **corpus)
    make_demo_corpus(data / "demo_unseen", noise_types=tuple(plan.unseen),
                     **{**corpus, "num_train": 1, "num_valid": 0})
    build_nonstationary(data / "demo" / "test" / "clean", data / "nonstationary", snrs=(5,), seed=0, progress=False)
    return {"in_distribution": data / "demo" / "test", "unseen_noise": data / "demo_unseen" / "test",
            "nonstationary": data / "nonstationary" / "snr_5"}  # the builder writes one folder per SNR


def run_command(args: list[str], what: str) -> None:
    """One of the project's commands in a child process, as from a shell; a failure stops the study."""
    log.info("study: %s", " ".join(args))
    code = subprocess.run([sys.executable, *args], cwd=REPO).returncode
    if code:
        raise StudyError(f"{what} failed (exit {code}): rerun the study to resume after fixing it; the command "
                         f"was: python {' '.join(args)}")


def train_rows(plan: StudyPlan) -> None:
    for row in plan.rows:
        for seed in plan.seeds:
            folder = plan.run_dir(row, seed)
            if (folder / "metrics.json").is_file():
                continue  # finished
            run_command(["train.py", "experiment=demo", f"seed={seed}", f"threads={plan.threads}", "~data.prepare",
                         f"paths.data_dir={plan.out / 'data'}", f"hydra.run.dir={folder}", "logger=csv",
                         *ROWS[row], *SCALES[plan.scale]["train"]], f"training {row} seed {seed}")


def run_name(row: str, seed: int) -> str:
    """The report's name of a run (a Hydra key: no dots)."""
    return f"{row.replace('.', '_')}_seed{seed}"


def report(plan: StudyPlan, sets: dict[str, Path]) -> None:
    runs = [f"+runs.{run_name(r, s)}={plan.run_dir(r, s)}" for r in plan.rows for s in plan.seeds]
    guidance = ",".join(f"{w:g}" for w in plan.guidance)
    run_command(["-m", "sgmse_nc.eval.report", *runs, *[f"+sets.{n}={p}" for n, p in sets.items()],
                 f"guidance=[{guidance}]", f"out_dir={plan.out / 'report'}", "diagnostics.enabled=false",
                 f"baseline={BASELINE if BASELINE in plan.rows else 'null'}",
                 f"threads={plan.threads}",
                 *SCALES[plan.scale]["report"]], "the report")


def paired_tables(plan: StudyPlan, sets: dict[str, Path]) -> dict[str, str]:
    """The report's paired tables of every set (it pools each row's seeds: its runs are named <row>_seed<k>)."""
    return {name: (plan.out / "report" / name / "paired.md").read_text() for name in sets}


def run_study(plan: StudyPlan) -> Path:
    """Every step in order; each skips what an earlier call finished. Returns <out>/study.md."""
    sets = build_sets(plan)
    train_rows(plan)
    report(plan, sets)
    tables = paired_tables(plan, sets)
    lines = [f"# Study in miniature ({plan.scale} scale)", "",
             f"- rows {', '.join(plan.rows)}; seeds {', '.join(map(str, plan.seeds))} (matched: every row of a "
             f"seed starts from the same backbone and sees the same examples)",
             f"- training noise classes {', '.join(plan.train_classes)}; unseen {', '.join(plan.unseen)}",
             f"- test sets: " + ", ".join(f"{n} ({p})" for n, p in sets.items()),
             f"- guidance w in {{{', '.join(f'{w:g}' for w in plan.guidance)}}}; report: {plan.out / 'report' / 'report.md'}",
             ""] + [tables[n] for n in sets]
    path = plan.out / "study.md"
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path
