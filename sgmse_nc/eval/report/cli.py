"""Run-level evaluation: trained runs × test sets × guidance scales × reference strategies -> the study's tables.

usage: sgmse-report [CONFIG] [Hydra overrides]          (or: python -m sgmse_nc.eval.report ...)
    sgmse-report +runs.demo=outputs/demo/quickstart +sets.test=data/demo/test guidance=[0,1,3]

CONFIG names a file under conf/report/ (default: `default`) or is a path to a YAML file of the same form.
For every run (a checkpoint, or a run folder holding checkpoints/last.ckpt) and every test set (a folder
with clean/, noisy/, noise_ref/ and manifest.csv, as `prepare` writes them) each guidance scale w is
enhanced (w = 0: the null condition, i.e. the unconditional score, once per run and set; w > 0: once per
reference strategy, a folder of the set such as noise_ref/) with the library (sgmse_nc.enhance.folder),
scored (sgmse_nc.eval.folder, in a process pool while the next cell enhances) and tabled
(sgmse_nc.eval.comparison). Output folder (`out_dir`):

    report.md                   header (scale: backbone, steps, training data, sampler, N, seeds, the reference
                                length encoded) + every set's tables
    report.html, listen/        the same tables, the plots and per set the files at the 10th/50th/90th
                                percentile of the best system's improvement, to listen to (works from disk)
    <set>/comparison.{md,csv,json}   rows run × w (× reference), noisy first; by SNR and by category
    <set>/plot_vs_w.png, <set>/plot_snr_<run>.png, <set>/spectrograms.png
    work/<run>/<set>/<reference>_w<w>/{enhanced/,eval/}   wavs and per-file rows (reused on a rerun)
    work/noisy/<set>/eval/      the noisy input's per-file rows

and each run folder gets `reports/<out_dir name>/` with its own rows of the tables. An unconditional run has
one row (guidance has no effect on it). Tables by SNR / category / ... come from the manifests' columns found
by name (group_by; aliases such as snr_target_db or noise_category, and +group_columns.<column>=<grouping> for
others; a grouping no set has is one warning line). `threads` (a number, or auto: the cores free now) sets
torch's threads for enhancement, inline scoring and the diagnostics. The embedding diagnostics embed the
run's own training references (rebuilt from its config.yaml: paired folders or dynamic mixing from its noise
pools) or diagnostics.train_set; a run whose training data is not readable here is skipped with one line.
Reruns resume: finished enhancements and per-file rows are reused; a cell that failed (its error is kept in
the table, marked FAILED) is retried. Exit status 1 when a cell or the diagnostics failed. References are
encoded as each checkpoint was trained: the centre stretch of its ref_seconds (whole files for a checkpoint
that does not record it), or `ref_seconds=` for all runs. A reference strategy whose name contains "oracle"
(e.g. `oracle_mixed_noise`: the very noise mixed into the input, noisy − clean) puts ORACLE into every title
it appears in.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from omegaconf import DictConfig

from sgmse_nc.cli import run_main
from sgmse_nc.eval.report.run import run_report
from sgmse_nc.eval.report.study import ReportError


def load_config(name: str = "default", overrides=()) -> DictConfig:
    """A conf/report/ file by name, or a YAML path, with Hydra overrides applied."""
    from hydra import compose, initialize_config_dir

    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ReportError(f"report config {path} not found.")
        directory, config_name = path.resolve().parent, path.stem
    else:
        from sgmse_nc.config import CONFIG_DIR

        directory, config_name = CONFIG_DIR / "report", name
        if not (directory / f"{name}.yaml").is_file():
            choices = sorted(p.stem for p in directory.glob("*.yaml"))
            raise ReportError(f"no report config {name!r} in {directory}; choose one of {choices} or give a path.")
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(str(directory), version_base="1.3"):
            return compose(config_name, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as err:
        raise ReportError(f"report config {config_name} with overrides {list(overrides)}: {err} (a key the config "
                          f"lacks needs a leading +, e.g. +runs.<name>=<folder>)") from err


def main(argv=None) -> int:
    """The exit status: 0; 1 when a cell (marked in the tables) or the diagnostics failed; 2 for a configuration
    problem."""
    return run_main(_run, argv)


def _run(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    name = argv.pop(0) if argv and "=" not in argv[0] else "default"
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = load_config(name, argv)
    from contextlib import nullcontext

    from sgmse_nc.lock import folder_lock

    with folder_lock(cfg.out_dir, "report") if cfg.get("out_dir") else nullcontext():  # one writer per report
        result = run_report(cfg)
    if result.failures:
        print(f"error: {'. '.join(result.failures)}. Rerun the same command to retry (finished cells are reused).",
              file=sys.stderr)
        return 1
    return 0
