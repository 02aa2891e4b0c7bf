"""The evaluate command (sgmse-evaluate, evaluate.py): evaluate enhanced wavs against clean references: PESQ / ESTOI / SI-SDR tables (mean ± std).

    sgmse-evaluate --enhanced DIR --clean DIR [--noisy DIR] [--out DIR]
                       [--manifest CSV --group-by snr,noise_type] [--workers N] [--pesq-mode wb|nb]
    sgmse-evaluate --enhanced base=DIR cfg=DIR ... --clean DIR --noisy DIR --out DIR   # comparison
                       [--baseline base]   # + paired differences vs base with 95% intervals (paired.md)

Writes per_file.csv, summary.md / .json / .csv and box plots into --out (default: `<enhanced>_eval`
beside the enhanced folder). Several enhanced folders (name=DIR) give one comparison table instead
(comparison.md / .csv / .json in --out, each folder's per-file rows in --out/<name>/); with --baseline, every
other folder's mean paired difference to it per file with 95% intervals (over files, clustered by the
manifest's noise class or recording column when there is one: sgmse_nc.eval.paired) in paired.md / .csv.
Rerunning resumes from the per-file rows.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from sgmse_nc.cli import AUDIO_RATE, WORKERS, ArgumentParser, run_main
from sgmse_nc.eval import paired
from sgmse_nc.eval.comparison import NOISY, System, compare, write
from sgmse_nc.eval.dnsmos import dnsmos_folder, dnsmos_model
from sgmse_nc.eval.folder import (EvaluationError, check_metric_rates, default_out_dir, evaluate_folders, load_groups,
                                  scored_rate)
from sgmse_nc.eval.metrics import DEFAULT_METRICS, DNSMOS_METRICS, INTRUSIVE_METRICS
from sgmse_nc.eval.rows import read_per_file


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--enhanced", required=True, nargs="+", metavar="[NAME=]DIR",
                        help="folder of enhanced wavs; several (name=DIR ...) give one comparison table")
    parser.add_argument("--clean", help="folder of clean references (same relative paths); optional with --dnsmos")
    parser.add_argument("--noisy", help="folder of noisy inputs: adds their metrics and the improvement")
    parser.add_argument("--out", help="output folder (default: <enhanced>_eval beside the enhanced folder)")
    parser.add_argument("--manifest", help="CSV with an `id` column (path relative to --clean, no extension)")
    parser.add_argument("--group-by", default="",
                        help="comma-separated manifest columns, e.g. snr,noise_type ('snr+noise_type': both)")
    parser.add_argument("--baseline", metavar="NAME",
                        help="with several folders: the one every other is compared with, file by file (paired.md)")
    parser.add_argument("--workers", type=WORKERS, default=1, help="processes computing metrics in parallel")
    parser.add_argument("--pesq-mode", choices=("wb", "nb"), default="wb", help="PESQ wide-band or narrow-band")
    parser.add_argument("--no-estoi", action="store_true", help="skip ESTOI")
    parser.add_argument("--sample-rate", type=AUDIO_RATE, default=None,
                        help="rate the files are read at (default: the clean files' own). PESQ is computed at 16 kHz "
                             "(wide band; 8 kHz narrow), ESTOI at pystoi's 10 kHz, SI-SDR at this rate")
    parser.add_argument("--allow-missing", action="store_true",
                        help="evaluate the files present in all folders instead of failing on missing ones")
    parser.add_argument("--no-plot", action="store_true", help="skip the box plots")
    parser.add_argument("--dnsmos", action="store_true",
                        help="add DNSMOS SIG/BAK/OVRL (non-intrusive, offline; extra: pip install -e '.[dnsmos]'); "
                             "without --clean only DNSMOS is computed (real recordings), the noisy input's beside")
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def named_folders(items: list[str]) -> dict:
    """["a=DIR", "DIR2"] -> {"a": DIR, "DIR2's folder name": DIR2}; names must be unique."""
    folders = {}
    for item in items:
        name, _, folder = item.partition("=") if "=" in item else (Path(item).name, "", item)
        if not name or not folder:
            raise EvaluationError(f"--enhanced {item!r}: give NAME=DIR (e.g. cfg_w3=enhanced/cfg_w3).")
        if name in folders:
            raise EvaluationError(f"--enhanced: the name {name!r} is given twice; name each folder (NAME=DIR).")
        folders[name] = Path(folder)
    return folders


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in name)


def compare_folders(enhanced: dict[str, Path], clean_dir, noisy_dir=None, out_dir=None, manifest=None,
                    group_by=(), metrics=None, num_workers: int = 1, allow_missing: bool = False,
                    sample_rate: int | None = None, dnsmos: bool = False, quiet: bool = False,
                    baseline: str | None = None) -> dict:
    """Score each enhanced folder (name -> folder) and the noisy input against one clean set; write the
    comparison into out_dir (each system's per-file rows in out_dir/<name>/, reused on a rerun).

    A folder that cannot be evaluated (missing files, wrong lengths) keeps its row, marked FAILED.
    dnsmos: add DNSMOS SIG / BAK / OVRL columns (the optional extra, sgmse_nc.eval.dnsmos).
    """
    metrics = tuple(metrics or DEFAULT_METRICS)
    if out_dir is None:
        raise EvaluationError("comparing several enhanced folders needs an output folder (--out DIR).")
    if baseline is not None and baseline not in enhanced:
        raise EvaluationError(f"--baseline {baseline}: no enhanced folder has that name; the names are "
                              f"{', '.join(enhanced)} (give folders as NAME=DIR).")
    if NOISY in enhanced:
        raise EvaluationError(f"'{NOISY}' names the noisy input's row; give that enhanced folder another name.")
    out_dir = Path(out_dir)
    if sample_rate is not None:  # else each folder's clean rate, checked by evaluate_folders
        check_metric_rates(metrics, sample_rate)
    common = dict(clean_dir=clean_dir, manifest=manifest, group_by=group_by, num_workers=num_workers,
                  metrics=tuple(m for m in metrics if m in INTRUSIVE_METRICS), sample_rate=sample_rate, allow_missing=allow_missing, plot=False, quiet=True)

    def scored(folder, sub: Path) -> pd.DataFrame:
        evaluate_folders(folder, out_dir=sub, **common)
        table = read_per_file(sub / "per_file.csv")
        if dnsmos:
            table = table.merge(dnsmos_folder(folder, sub / "dnsmos.csv", quiet=True).drop(columns="key"),
                                on="id", how="left")
        return table

    if dnsmos:
        dnsmos_model()  # the optional extra missing: say so before any work
        metrics = metrics + DNSMOS_METRICS
    noisy = scored(noisy_dir, out_dir / NOISY) if noisy_dir is not None else None
    systems = []
    for name, folder in enhanced.items():
        try:
            systems.append(System({"system": name}, scored(folder, out_dir / _safe_name(name))))
        except EvaluationError as err:
            systems.append(System({"system": name}, error=str(err)))
    ids = sorted(set().union(*[set(s.per_file["id"]) for s in systems if s.per_file is not None],
                             set(noisy["id"]) if noisy is not None else set()))
    groups = load_groups(manifest, ids, group_by) if manifest is not None and group_by and ids else None
    rate = next(filter(None, (scored_rate(out_dir / sub) for sub in [NOISY, *map(_safe_name, enhanced)])), None)
    result = compare(systems, metrics, noisy, groups, group_by if groups is not None else (), rate)
    text = write(result, out_dir, f"Comparison against {clean_dir}")
    if baseline is not None:
        text += "\n" + _write_paired(systems, baseline, metrics, manifest, ids, out_dir, rate)
    if not quiet:
        print(text)
        print(f"results in {out_dir}")
    return result


def _write_paired(systems: list[System], baseline: str, metrics, manifest, ids, out_dir: Path,
                  sample_rate: int | None) -> str:
    """paired.md / .csv: every system minus the baseline, file by file, clustered by the manifest's noise column."""
    cluster = paired.cluster_column(pd.read_csv(manifest, nrows=0).columns) if manifest is not None else None
    groups = load_groups(manifest, ids, [cluster]) if cluster else None
    pairs = [({"system": s.labels["system"]}, {"system": baseline}, f"baseline {baseline}") for s in systems
             if s.labels["system"] != baseline]
    return paired.write(paired.paired_rows(systems, pairs, metrics, groups, cluster), out_dir,
                        f"Paired differences against {baseline}", sample_rate=sample_rate)


def evaluate_dnsmos(enhanced_dir, noisy_dir=None, out_dir=None, manifest=None, group_by=(),
                    quiet: bool = False) -> dict:
    """DNSMOS of the enhanced files (and of the noisy inputs beside them, with the improvement); no clean
    folder needed. Writes dnsmos.md / .csv / .json and the per-file rows (dnsmos_enhanced.csv,
    dnsmos_noisy.csv) into out_dir."""
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(enhanced_dir)
    enhanced = dnsmos_folder(enhanced_dir, out_dir / "dnsmos_enhanced.csv", quiet)
    noisy = dnsmos_folder(noisy_dir, out_dir / "dnsmos_noisy.csv", quiet) if noisy_dir is not None else None
    if noisy is not None:
        noisy = noisy[noisy["id"].isin(enhanced["id"])]  # the noisy folder may hold more than was enhanced
    groups = load_groups(manifest, list(enhanced["id"]), group_by) if manifest is not None and group_by else None
    result = compare([System({"system": "enhanced"}, enhanced)], DNSMOS_METRICS, noisy, groups,
                     group_by if groups is not None else ())
    text = write(result, out_dir, f"DNSMOS P.835 of {enhanced_dir}", stem="dnsmos",
                 notes=["DNSMOS (speechmos ONNX models, offline), non-intrusive: no clean reference."])
    if not quiet:
        print(text)
    return result


def main(argv=None) -> int:
    """The exit status; a problem the user can fix is one `error: ...` line and status 2 (sgmse_nc.cli)."""
    return run_main(_run, argv)


def _run(argv=None) -> int:
    args = parse_args(argv)

    metrics = ["pesq" if args.pesq_mode == "wb" else "pesq_nb"] + ([] if args.no_estoi else ["estoi"]) + ["si_sdr"]
    group_by = [g.strip() for g in args.group_by.split(",") if g.strip()]
    several = len(args.enhanced) > 1 or "=" in args.enhanced[0]
    if args.clean is None and (several or not args.dnsmos):
        raise EvaluationError("--clean is needed (the references of PESQ / ESTOI / SI-SDR); only --dnsmos on "
                              "one enhanced folder runs without it.")
    if args.clean is None:
        evaluate_dnsmos(args.enhanced[0], args.noisy, args.out, args.manifest, group_by)
        return 0
    if several:
        result = compare_folders(named_folders(args.enhanced), args.clean, noisy_dir=args.noisy,
                                 out_dir=args.out, manifest=args.manifest, group_by=group_by,
                                 metrics=metrics, num_workers=args.workers, allow_missing=args.allow_missing,
                                 sample_rate=args.sample_rate, dnsmos=args.dnsmos, baseline=args.baseline)
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
