"""The report from start to end: read the study (study), enhance and score every cell (runner), the embedding
diagnostics and w = auto rows (embeddings), then the tables, plots and report.md (tables), and the listening
page report.html (page)."""
from __future__ import annotations

from dataclasses import dataclass

from sgmse_nc.eval.report.embeddings import auto_rows
from sgmse_nc.eval.report.page import write_page
from sgmse_nc.eval.report.runner import enhance_and_score
from sgmse_nc.eval.report.study import Study
from sgmse_nc.eval.report.tables import write_report, write_set_tables
from sgmse_nc.threads import set_threads


@dataclass
class ReportResult:
    tables: dict  # set name -> its comparison dict (sgmse_nc.eval.comparison)
    failures: list[str]  # cells marked FAILED and diagnostics that failed: the command exits 1


def run_report(cfg) -> ReportResult:
    """Everything sgmse_nc.eval.report.cli's docstring lists, with `threads` torch threads for enhancement,
    inline scoring and the diagnostics."""
    study = Study.from_config(cfg)
    set_threads(study.cfg.get("threads", 1))
    enhance_and_score(study)
    extra = auto_rows(study)
    tables = {set_name: write_set_tables(study, set_name, extra[set_name]) for set_name in study.sets}
    print(write_report(study, tables), end="")
    print(f"report in {study.out_dir / 'report.md'}")
    print(f"listening page in {write_page(study, tables)}")
    failed = [f"{s}: " + ", ".join(f"{k}={v}" for k, v in system["labels"].items())
              for s, result in tables.items() for system in result["systems"] if system["error"]]
    cells = [f"{len(failed)} cell(s) failed and are marked FAILED in the tables: {'; '.join(failed)}"] if failed else []
    return ReportResult(tables, cells + study.failures)
