"""What a report is about, read from its configuration: the runs, the test sets, the cells (guidance scale ×
reference strategy), and where each cell's work goes (`Study`, the one object every step of the report reads).

Work folder (under out_dir/work/, reused on a rerun):

    <run>/<set>/<reference>_w<w>/{enhanced/,eval/}   a cell's wavs and per-file rows
    noisy/<set>/eval/                               the noisy input's per-file rows
    oracle/<set>/, train_refs/<run>/                 noisy − clean references, written once

Grouping columns are found by name in each set's manifest: the grouping's own name, a column the config's
`group_columns` maps to it ({manifest column: grouping}), else a known alias (GROUP_ALIASES: e.g. snr_target_db
is the snr grouping, noise_category the category one). A grouping no set provides is one warning line.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from sgmse_nc.audio import list_audio, read_audio, write_audio
from sgmse_nc.cli import BATCH, GUIDANCE, SEED, STEPS, THREADS, WORKERS, Number
from sgmse_nc.enhance.core import MIN_REF_SECONDS
from sgmse_nc.errors import OptionError, UserError
from sgmse_nc.eval.tables import label_order

ORACLE_MIXED_NOISE = "oracle_mixed_noise"  # computed here: noisy − clean of the same file
NULL = "null"  # the reference column of w = 0 (no reference: the null condition)
LAYOUT = ("clean", "noisy", "manifest.csv")
# Other spellings of the report's groupings in manifests (builders, common corpora); first found wins.
GROUP_ALIASES = {
    "snr": ("snr_db", "snr_target_db", "target_snr_db", "target_snr", "snr_target", "input_snr", "input_snr_db"),
    "category": ("noise_category", "noise_class", "category_name", "class", "class_name"),
    "noise_type": ("noise_label", "noise_name"),
    "kind": ("noise_kind", "nonstationary_kind"),
}

log = logging.getLogger(__name__)


class ReportError(UserError, ValueError):
    """A user-facing problem with the report's configuration, runs or test sets; the message names the fix."""


def error_line(err: BaseException) -> str:
    """An exception as the one short line a table keeps for a failed cell."""
    return f"{type(err).__name__}: {err}".strip().splitlines()[0][:300]


@dataclass
class Run:
    name: str
    ckpt: Path
    folder: Path | None  # the run folder (tables are copied there), None for a loose checkpoint
    info: dict = field(default_factory=dict)  # backbone, steps, data, seed (the header)

    @property
    def conditional(self) -> bool:
        return self.info.get("encoder", "none") != "none"


@dataclass(frozen=True)
class Cell:
    """One guidance scale with one reference strategy: a column of the study (NULL reference at w = 0)."""
    w: float
    reference: str

    @property
    def key(self) -> str:
        return f"{self.reference}_w{self.w:g}"


UNCONDITIONAL = Cell(0.0, NULL)  # what an unconditional model computes for every cell


def resolve_run(name: str, path) -> Run:
    if path is None:
        raise ReportError(f"run {name}: no path given. Set runs.{name}=<run folder or .ckpt> (or +runs.<name>=... "
                          f"for a run the config does not list).")
    path = Path(path)
    if path.is_dir():
        ckpt = path / "checkpoints" / "last.ckpt"
        if not ckpt.is_file():
            raise ReportError(f"run {name}: {path} holds no checkpoints/last.ckpt. Point runs.{name} at a run "
                              f"folder written by train.py or at a .ckpt file.")
        return Run(name, ckpt, path, run_info(ckpt, path))
    if not path.is_file():
        raise ReportError(f"run {name}: {path} not found. Point runs.{name} at a run folder or a .ckpt file.")
    folder = path.parent.parent if path.parent.name == "checkpoints" else None
    return Run(name, path, folder, run_info(path, folder))


def run_info(ckpt: Path, folder: Path | None) -> dict:
    """What the header states about a run: backbone, trained steps, data, training seed, encoder, the reference
    length it was trained with (ref_seconds; None in older checkpoints)."""
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # noqa: BLE001 - pickle/zip errors of every kind mean the same thing here
        raise ReportError(f"{ckpt}: not a checkpoint written by train.py ({error_line(err)}).") from err
    hp = state.get("hyper_parameters", {})
    backbone = hp.get("backbone", {})
    info = {"steps": state.get("global_step"), "encoder": (hp.get("encoder") or {}).get("name", "none"),
            "backbone": f"{str(backbone.get('_target_', '?')).rsplit('.', 1)[-1]}"
                        f"(nf={backbone.get('nf', '?')}, ch_mult={backbone.get('ch_mult', '?')})",
            "sampler": dict(hp.get("sampler") or {}), "ref_seconds": hp.get("ref_seconds")}
    config = folder / "config.yaml" if folder is not None else None
    if config is not None and config.is_file():
        cfg = OmegaConf.load(config)
        info["seed"] = cfg.get("seed")
        info["data"] = describe_data(OmegaConf.select(cfg, "data.train", default=None),
                                     OmegaConf.select(cfg, "experiment_name", default="?"))
    return info


def describe_data(train, experiment: str = "?") -> str:
    """The training data a run's data.train node names: dynamic mixing's speech folder and noise pools (with
    their class/fold filters), a paired set's folder, else the dataset class and the experiment."""
    if train is None:
        return f"experiment {experiment} (its config has no data.train)"
    train = OmegaConf.to_container(train) if OmegaConf.is_config(train) else dict(train)
    if train.get("speech_dir") is not None and train.get("noise_dirs") is not None:
        pools = train["noise_dirs"]
        pools = [pools] if isinstance(pools, (str, dict)) else pools
        snr = train.get("snr_range")
        at = f" at SNR {snr[0]:g} to {snr[1]:g} dB" if snr else ""
        return f"dynamic mixing of speech {train['speech_dir']} with noise pools " \
               f"{', '.join(_describe_pool(p) for p in pools)}{at}"
    if train.get("root") is not None:
        return "/".join(str(train[k]) for k in ("root", "subset") if train.get(k) is not None)
    name = str(train.get("_target_", "?")).rsplit(".", 1)[-1]
    return f"{name} of experiment {experiment}"


def _describe_pool(entry) -> str:
    if not isinstance(entry, dict):
        return str(entry)
    filters = [f"{key} {', '.join(map(str, entry[key]))}" for key in ("classes", "exclude_classes", "folds",
                                                                         "exclude_folds") if entry.get(key)]
    return f"{entry.get('name') or entry.get('root')}" + (f" ({'; '.join(filters)})" if filters else "") + (
        f" [{entry['root']}]" if entry.get("name") else "")


def group_columns(requested: list[str], columns, mapping: dict[str, str]) -> dict[str, str]:
    """grouping -> the manifest column that holds it: the column of its own name, else one `mapping`
    ({column: grouping}) names, else a known alias (GROUP_ALIASES); groupings with none are left out."""
    out = {}
    for name in requested:
        candidates = [name, *(c for c, g in mapping.items() if g == name), *GROUP_ALIASES.get(name, ())]
        found = next((c for c in candidates if c in columns), None)
        if found is not None:
            out[name] = found
    return out


def set_groupings(cfg, sets: dict[str, Path]) -> dict[str, dict[str, str]]:
    """Per set {grouping: manifest column} of the configured group_by (and of every grouping group_columns
    maps to); the groupings no set provides are named in one warning line, with how to map a column."""
    mapping = cfg.get("group_columns") or {}
    if not isinstance(mapping, (dict, DictConfig)):
        raise ReportError(f"group_columns={mapping}: give a mapping {{manifest column: grouping}}, e.g. "
                          f"+group_columns.snr_in_db=snr.")
    mapping = {str(k): str(v) for k, v in mapping.items()}
    requested = list(dict.fromkeys([*map(str, cfg.get("group_by") or []), *mapping.values()]))
    found = {name: group_columns(requested, pd.read_csv(folder / "manifest.csv", nrows=0).columns, mapping)
             for name, folder in sets.items()}
    missing = [g for g in requested if not any(g in groups for groups in found.values())]
    if missing:
        names = {g: [g, *(c for c, m in mapping.items() if m == g), *GROUP_ALIASES.get(g, ())] for g in missing}
        looked = "; ".join(f"{g}: {', '.join(columns)}" for g, columns in names.items())
        log.warning("warning: group_by %s: no test set's manifest has a column for %s (looked for %s), so no "
                    "table by %s; map a manifest column with +group_columns.<column>=<grouping>",
                    ", ".join(missing), "it" if len(missing) == 1 else "them", looked,
                    "it" if len(missing) == 1 else "them")
    return found


def expand_sets(sets) -> dict[str, Path]:
    """A builder's output with one folder per SNR (<out>/snr_<k>/, e.g. ESC-50 OOD) becomes one set per SNR."""
    out = {}
    for name, folder in sets.items():
        folder = Path(folder)
        per_snr = sorted((p for p in folder.glob("snr_*") if (p / "manifest.csv").is_file()),
                         key=lambda p: label_order(p.name.removeprefix("snr_")))
        if per_snr and not (folder / "manifest.csv").is_file():
            out.update({f"{name}_{p.name}": p for p in per_snr})
        else:
            out[name] = folder
    return out


def check_set(name: str, folder, references: list[str]) -> Path:
    folder = Path(folder)
    missing = [p for p in LAYOUT if not (folder / p).exists()]
    missing += [r for r in references if r != ORACLE_MIXED_NOISE and not (folder / r).is_dir()]
    if missing:
        raise ReportError(f"test set {name}: {folder} lacks {', '.join(missing)}. A test set holds clean/, noisy/, "
                          f"the reference folders ({', '.join(references) or 'none'}) and manifest.csv, as "
                          f"`python -m sgmse_nc.data.prepare` writes them.")
    return folder


def check_guidance(guidance) -> None:
    """`guidance` is a non-empty list of scales in range (0 is the null condition): one line naming a bad one."""
    if not (OmegaConf.is_list(guidance) or isinstance(guidance, (list, tuple))) or not len(guidance):
        raise OptionError(f"guidance={guidance}: give a list of guidance scales, e.g. guidance=[0,1,3].")
    for w in guidance:
        GUIDANCE.check("guidance", w)


def cells(guidance, references: list[str]) -> list[Cell]:
    """The cells of the guidance scales: w = 0 once (the null condition), every other w once per reference."""
    check_guidance(guidance)
    out = []
    for w in guidance:
        w = float(w)
        out += [UNCONDITIONAL] if w == 0 else [Cell(w, r) for r in references]
    return out


def oracle_references(test_set: Path, out: Path) -> Path:
    """noisy − clean per file (the noise in the input itself): an ORACLE reference, written once."""
    for noisy in list_audio(test_set / "noisy"):
        rel = noisy.relative_to(test_set / "noisy")
        target = out / rel
        if not target.is_file():
            y, x = read_audio(noisy, min_samples=0), read_audio(test_set / "clean" / rel, min_samples=0)
            n = min(len(y), len(x))
            write_audio(target, y[:n] - x[:n], subtype="FLOAT")
    return out


@dataclass
class Study:
    """The report's configuration and what it names; every step of the report reads this one object.

    results: (run name, set name, cell key) -> None when the cell was enhanced and scored, else why not
    (filled by sgmse_nc.eval.report.runner; the noisy input's entry is ("noisy", set name, "")).
    """
    cfg: DictConfig
    runs: list[Run]
    sets: dict[str, Path]  # name -> test-set folder
    cells: list[Cell]
    references: list[str]  # reference strategies, in the configured order
    sampler: dict  # sampler options the configuration overrides
    groups: dict[str, dict[str, str]] = field(default_factory=dict)  # set -> {grouping: manifest column}
    results: dict[tuple[str, str, str], str | None] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)  # what failed outside the cells (diagnostics): exit 1

    @classmethod
    def from_config(cls, cfg) -> Study:
        cfg = OmegaConf.create(cfg) if not isinstance(cfg, DictConfig) else cfg
        if not cfg.get("runs") or not cfg.get("sets"):
            raise ReportError("the report needs runs and sets, e.g. +runs.demo=outputs/demo/quickstart "
                              "+sets.demo_test=data/demo/test (or list them in a conf/report/ file).")
        if not cfg.get("out_dir"):
            raise ReportError("set out_dir (the report folder), e.g. out_dir=reports/study.")
        references = list(cfg.get("references") or ["noise_ref"])
        check_guidance(cfg.get("guidance"))
        runs = [resolve_run(name, path) for name, path in cfg.runs.items()]
        needed = references if any(float(w) > 0 for w in cfg.guidance) else []
        sets = {name: check_set(name, path, needed) for name, path in expand_sets(cfg.sets).items()}
        sampler = {k: v for k, v in OmegaConf.to_container(cfg.get("sampler") or {}).items() if v is not None}
        check_values(cfg, runs, sampler)
        check_baseline(cfg.get("baseline"), runs)
        return cls(cfg, runs, sets, cells(cfg.guidance, references), references, sampler, set_groupings(cfg, sets))

    @property
    def out_dir(self) -> Path:
        return Path(self.cfg.out_dir)

    @property
    def metrics(self) -> list[str]:
        return list(self.cfg.metrics)

    @property
    def oracle(self) -> bool:
        """Some cell uses an oracle reference: every title made with it says ORACLE."""
        return any("oracle" in c.reference for c in self.cells)

    def run_cells(self, run: Run) -> list[Cell]:
        """The cells a run has rows for: every cell, or for an unconditional model the one cell it computes
        (guidance and references have no effect on it)."""
        return self.cells if run.conditional else [UNCONDITIONAL]

    def work(self, set_name: str, run: Run | None = None, cell: Cell | None = None) -> Path:
        """A cell's work folder (enhanced/, eval/): work/<run>/<set>/<cell key>, the one cell an unconditional
        model computes for every cell; without a run, the noisy input's: work/noisy/<set>."""
        if run is None:
            return self.out_dir / "work" / "noisy" / set_name
        return self.out_dir / "work" / run.name / set_name / (cell if run.conditional else UNCONDITIONAL).key

    def per_file(self, set_name: str, run: Run | None = None, cell: Cell | None = None) -> Path:
        """The per-file rows of a cell (or of the noisy input)."""
        return self.work(set_name, run, cell) / "eval" / "per_file.csv"

    def reference_dir(self, set_name: str, reference: str) -> Path | None:
        """The folder of a set's references of one strategy (None for the null condition); the oracle one is
        written on first use."""
        if reference == NULL:
            return None
        if reference == ORACLE_MIXED_NOISE:
            return oracle_references(self.sets[set_name], self.out_dir / "work" / "oracle" / set_name)
        return self.sets[set_name] / reference

    def train_references(self, run: Run, folder: Path) -> Path:
        """noisy − clean of a training folder without noise_ref/ (what same_utterance training used)."""
        return oracle_references(folder, self.out_dir / "work" / "train_refs" / run.name)


# a run named <row>_seed<k> is row <row> trained with seed k: paired differences pool its seeds
SEEDED_RUN = re.compile(r"^(?P<row>.+)_seed(?P<seed>\d+)$")


def row_and_seed(run_name: str) -> tuple[str, str | None]:
    """The row a run repeats and its seed (None when the name carries no _seed<k>)."""
    match = SEEDED_RUN.match(run_name)
    return (match["row"], match["seed"]) if match else (run_name, None)


# The report config's numbers and their ranges, checked at start: a bad value is one `error:` line, not a study
# whose every condition failed.
NUMBERS = {"seed": SEED, "threads": THREADS, "batch_size": BATCH, "sampler.N": STEPS,
           "score_workers": Number(int, low=0, high=WORKERS.high), "spectrogram_files": Number(int, low=0, high=1000),
           "diagnostics.max_train": Number(int, low=1, high=10**6), "diagnostics.k": Number(int, low=1, high=1000),
           "diagnostics.s_lo": Number(float, low=-1e6, high=1e6), "diagnostics.s_hi": Number(float, low=-1e6, high=1e6),
           "ref_seconds": Number(float, low=MIN_REF_SECONDS, high=600)}


def check_baseline(baseline, runs: list[Run]) -> None:
    """The paired tables' baseline names one of the runs (or the row of runs named <row>_seed<k>)."""
    names = list(dict.fromkeys(n for run in runs for n in (run.name, row_and_seed(run.name)[0])))
    if baseline is not None and str(baseline) not in names:
        raise OptionError(f"baseline={baseline}: not one of the runs; use one of {names} (or baseline=null: "
                          f"only w against w = 0 within each run).")


def check_values(cfg, runs: list[Run], sampler: dict) -> None:
    """Every number in range, the device present on this machine, the sampler defined for each run's SDE."""
    from sgmse_nc.devices import check_device
    from sgmse_nc.diffusion.checkpoints import read_our_checkpoint
    from sgmse_nc.enhance.folder import check_checkpoint_sampler

    for key, number in NUMBERS.items():
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None:
            number.check(key, value)
    check_device(cfg.get("device"), f"device={cfg.get('device')}")
    for run in runs if sampler else []:  # the checkpoint's own sampler was checked when it was trained
        check_checkpoint_sampler(read_our_checkpoint(run.ckpt), sampler, config_key="sampler")
