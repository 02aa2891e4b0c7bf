"""The study command (sgmse-study, python -m sgmse_nc.study): the experiment matrix in miniature on the embedded
demo corpus, from its data to paired differences with 95% intervals (sgmse_nc.study.run).

    sgmse-study                                       # default rows and seeds at the CPU scale
    sgmse-study --rows sgmse_baseline nc_baseline cfg_p0.2 --seeds 1 2 3 --out studies/cpu
    sgmse-study --scale poc --out studies/poc         # GPU scales: poc, paper

Rerunning the same command resumes: built sets, finished runs and scored cells are reused.
"""
from __future__ import annotations

import logging
import sys

from sgmse_nc.cli import ArgumentParser, run_main
from sgmse_nc.study.run import ROWS, SCALES, UNSEEN, StudyPlan, run_study


def parse_args(argv=None):
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="studies/miniature", help="the study folder (default: studies/miniature)")
    parser.add_argument("--rows", nargs="+", default=["sgmse_baseline", "cfg_p0.2"], help=f"of {', '.join(ROWS)}")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2], help="training seeds (default: 1 2)")
    parser.add_argument("--scale", default="cpu", help=f"{', '.join(SCALES)} (default: cpu)")
    parser.add_argument("--guidance", nargs="+", type=float, default=[0.0, 1.0, 3.0], help="w (default: 0 1 3)")
    parser.add_argument("--unseen", nargs="+", default=list(UNSEEN), help="noise classes held out of training")
    parser.add_argument("--threads", default="1", help="torch threads of each training and of the report: a number or auto")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    return run_main(_run, argv)


def _run(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    plan = StudyPlan(args.out, args.rows, args.seeds, args.scale, args.guidance, args.unseen, args.threads)
    path = run_study(plan)
    print(path.read_text())
    print(f"study in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
