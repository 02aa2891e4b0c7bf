"""The run-level report (sgmse-report, `python -m sgmse_nc.eval.report`): trained runs × test sets × guidance
scales × reference strategies -> the study's tables, plots and report.md (what it writes: the cli module).

    study       the configuration read into one Study: runs, test sets, cells (w × reference), work folders
    runner      enhance and score every cell (scoring in a process pool while the next cell enhances)
    embeddings  the embedding diagnostics of each conditional run and its w = auto rows
    tables      per-set comparison tables, each run folder's own rows, report.md
    plots       metric vs w, bars per SNR, spectrograms
    page        report.html: the tables, the plots and a few examples (chosen by rule) to listen to
    run         run_report: all of the above in order
    cli         load_config and the command (main)
"""
from sgmse_nc.eval.report.cli import main

__all__ = ["main"]
