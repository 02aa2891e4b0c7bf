"""Evaluate enhanced wavs against clean references: PESQ / ESTOI / SI-SDR tables (mean ± std).

    python evaluate.py --enhanced DIR --clean DIR [--noisy DIR] [--out DIR]
                       [--manifest CSV --group-by snr,noise_type] [--workers N] [--pesq-mode wb|nb]
    python evaluate.py --enhanced base=DIR cfg=DIR ... --clean DIR --noisy DIR --out DIR   # comparison

Writes per_file.csv, summary.md / .json / .csv and box plots into --out (default: `<enhanced>_eval`
beside the enhanced folder). Several enhanced folders (name=DIR) give one comparison table instead
(comparison.md / .csv / .json in --out, each folder's per-file rows in --out/<name>/). Rerunning
resumes from the per-file rows.
"""
from __future__ import annotations

import argparse
import sys

from sgmse_nc.audio import SAMPLE_RATE
from sgmse_nc.cli import ArgumentParser, run_main


def parse_args(argv=None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--enhanced", required=True, nargs="+", metavar="[NAME=]DIR",
                        help="folder of enhanced wavs; several (name=DIR ...) give one comparison table")
    parser.add_argument("--clean", help="folder of clean references (same relative paths); optional with --dnsmos")
    parser.add_argument("--noisy", help="folder of noisy inputs: adds their metrics and the improvement")
    parser.add_argument("--out", help="output folder (default: <enhanced>_eval beside the enhanced folder)")
    parser.add_argument("--manifest", help="CSV with an `id` column (path relative to --clean, no extension)")
    parser.add_argument("--group-by", default="",
                        help="comma-separated manifest columns, e.g. snr,noise_type ('snr+noise_type': both)")
    parser.add_argument("--workers", type=int, default=1, help="processes computing metrics in parallel")
    parser.add_argument("--pesq-mode", choices=("wb", "nb"), default="wb", help="PESQ wide-band or narrow-band")
    parser.add_argument("--no-estoi", action="store_true", help="skip ESTOI")
    parser.add_argument("--sample-rate", type=int, default=SAMPLE_RATE, help="rate the metrics are computed at")
    parser.add_argument("--allow-missing", action="store_true",
                        help="evaluate the files present in all folders instead of failing on missing ones")
    parser.add_argument("--no-plot", action="store_true", help="skip the box plots")
    parser.add_argument("--dnsmos", action="store_true",
                        help="add DNSMOS SIG/BAK/OVRL (non-intrusive, offline; extra: pip install -e '.[dnsmos]'); "
                             "without --clean only DNSMOS is computed (real recordings), the noisy input's beside")
    return parser.parse_args(argv)


def named_folders(items: list[str]) -> dict:
    """["a=DIR", "DIR2"] -> {"a": DIR, "DIR2's folder name": DIR2}; names must be unique."""
    from pathlib import Path

    from sgmse_nc.evaluation import EvaluationError

    folders = {}
    for item in items:
        name, _, folder = item.partition("=") if "=" in item else (Path(item).name, "", item)
        if not name or not folder:
            raise EvaluationError(f"--enhanced {item!r}: give NAME=DIR (e.g. cfg_w3=enhanced/cfg_w3).")
        if name in folders:
            raise EvaluationError(f"--enhanced: the name {name!r} is given twice; name each folder (NAME=DIR).")
        folders[name] = Path(folder)
    return folders


def main(argv=None) -> int:
    """The exit status; a problem the user can fix is one `error: ...` line and status 2 (sgmse_nc.cli)."""
    return run_main(_run, argv)


def _run(argv=None) -> int:
    args = parse_args(argv)
    from sgmse_nc.evaluation import EvaluationError, default_out_dir, evaluate_folders  # after parsing: fast --help

    metrics = ["pesq" if args.pesq_mode == "wb" else "pesq_nb"] + ([] if args.no_estoi else ["estoi"]) + ["si_sdr"]
    group_by = [g.strip() for g in args.group_by.split(",") if g.strip()]
    from sgmse_nc.dnsmos import evaluate_dnsmos

    several = len(args.enhanced) > 1 or "=" in args.enhanced[0]
    if args.clean is None and (several or not args.dnsmos):
        raise EvaluationError("--clean is needed (the references of PESQ / ESTOI / SI-SDR); only --dnsmos on "
                              "one enhanced folder runs without it.")
    if args.clean is None:
        evaluate_dnsmos(args.enhanced[0], args.noisy, args.out, args.manifest, group_by)
        return 0
    if several:
        from sgmse_nc.comparison import compare_folders

        result = compare_folders(named_folders(args.enhanced), args.clean, noisy_dir=args.noisy,
                                 out_dir=args.out, manifest=args.manifest, group_by=group_by,
                                 metrics=metrics, num_workers=args.workers, allow_missing=args.allow_missing,
                                 sample_rate=args.sample_rate, dnsmos=args.dnsmos)
        failed = [s["labels"]["system"] for s in result["systems"] if s["error"]]
        if failed:
            print(f"error: {len(failed)} folder(s) could not be evaluated ({', '.join(failed)}); their rows "
                  f"are marked FAILED with the reason in {args.out}/comparison.md", file=sys.stderr)
            return 1
        return 0
    evaluate_folders(args.enhanced[0], args.clean, noisy_dir=args.noisy, out_dir=args.out,
                     manifest=args.manifest, group_by=group_by,
                     num_workers=args.workers, metrics=metrics, sample_rate=args.sample_rate,
                     allow_missing=args.allow_missing, plot=not args.no_plot)
    if args.dnsmos:
        evaluate_dnsmos(args.enhanced[0], args.noisy, args.out or default_out_dir(args.enhanced[0]), args.manifest,
                        group_by)
    return 0


if __name__ == "__main__":
    sys.exit(main())
