"""The report from start to end: read the study (study), enhance and score every cell (runner), the embedding
diagnostics and w = auto rows (embeddings), then the tables, plots and report.md (tables)."""
from __future__ import annotations

from sgmse_nc.eval.report.embeddings import auto_rows
from sgmse_nc.eval.report.runner import enhance_and_score
from sgmse_nc.eval.report.study import Study
from sgmse_nc.eval.report.tables import write_report, write_set_tables


def run_report(cfg) -> dict:
    """Everything sgmse_nc.eval.report.cli's docstring lists; returns {set: comparison dict}."""
    study = Study.from_config(cfg)
    enhance_and_score(study)
    extra = auto_rows(study)
    tables = {set_name: write_set_tables(study, set_name, extra[set_name]) for set_name in study.sets}
    print(write_report(study, tables), end="")
    print(f"report in {study.out_dir / 'report.md'}")
    return tables
