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

from sgmse_nc.cli import GUIDANCE, SEED, THREADS, ArgumentParser, run_main
from sgmse_nc.data.synthetic import NOISES
from sgmse_nc.study.run import ROWS, SCALES, UNSEEN, StudyPlan, run_study


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="sgmse-study", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="studies/miniature", help="the study folder (default: studies/miniature)")
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=["sgmse_baseline", "cfg_p0.2"],
                        help="rows of the matrix (default: sgmse_baseline cfg_p0.2)")
    parser.add_argument("--seeds", nargs="+", type=SEED, default=[1, 2], help="training seeds (default: 1 2)")
    parser.add_argument("--scale", choices=list(SCALES), default="cpu", help="default: cpu")
    parser.add_argument("--guidance", nargs="+", type=GUIDANCE, default=[0.0, 1.0, 3.0], help="w (default: 0 1 3)")
    parser.add_argument("--unseen", nargs="+", choices=list(NOISES), default=list(UNSEEN),
                        help="noise classes held out of training (some, not all)")
    parser.add_argument("--threads", type=THREADS, default=1, help="torch threads of each training and of the report: a number or auto")
    return parser


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def main(argv=None) -> int:
    return run_main(_run, argv)


def _run(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    plan = StudyPlan(args.out, args.rows, args.seeds, args.scale, args.guidance, args.unseen, str(args.threads))
    path = run_study(plan)
    print(path.read_text())
    print(f"study in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
