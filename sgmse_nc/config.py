"""Compose the project's Hydra configs outside train.py (tests, benches, notebooks), with the same
defaults lists and overrides as the command line; and the `run_key` resolver that names run folders."""
from __future__ import annotations

import fnmatch
import hashlib
import os
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

CONFIG_DIR = Path(__file__).resolve().parents[1] / "conf"
MAX_KEY_CHARS = 120  # folder names stay well under the file systems' 255-byte limit


def run_key(overrides, ignore=()) -> str:
    """A stable folder name for a run: its command-line overrides (sorted, `key=value` joined by ','),
    leaving out Hydra's own keys and `ignore` (keys or glob patterns, e.g. `callbacks.*`, that do not change
    what is trained: raising max_steps resumes the same run). No timestamp: relaunching the same command finds the same folder
    (and its last.ckpt). '/' in values becomes '_' so paths never nest folders; a long key is shortened
    with a hash of the whole."""
    keep = []
    for item in overrides or ():
        key = item.split("=", 1)[0].lstrip("+~")
        if key.startswith(("hydra.", "hydra/")) or any(fnmatch.fnmatchcase(key, p) for p in ignore or ()):
            continue
        keep.append(item.lstrip("+~").strip("'\"").replace("/", "_").replace(" ", ""))
    name = ",".join(sorted(keep)) or "default"
    if len(name) > MAX_KEY_CHARS:
        name = f"{name[:MAX_KEY_CHARS - 9]}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"
    return name


if not OmegaConf.has_resolver("run_key"):
    OmegaConf.register_new_resolver("run_key", run_key)
# The folder a command starts in (paths.root_dir). Hydra's ${hydra:runtime.cwd} is the same folder but is unset
# where a sweep's launcher resolves hydra.sweep.dir, so `sgmse-train -m ...` could not start.
if not OmegaConf.has_resolver("cwd"):
    OmegaConf.register_new_resolver("cwd", lambda: os.getcwd())


def compose_config(overrides: list[str] | tuple[str, ...] = (), config_name: str = "train") -> DictConfig:
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name, overrides=list(overrides))


def build_model_from_config(overrides: list[str] | tuple[str, ...] = (), **model_kwargs):
    """A ScoreModel from the composed `model` node (e.g. overrides=["backbone=ncsnpp_tiny"])."""
    from hydra.utils import instantiate

    cfg = compose_config(overrides)
    node = {k: OmegaConf.to_container(cfg.model[k], resolve=True) if OmegaConf.is_config(cfg.model[k])
            else cfg.model[k] for k in cfg.model}
    return instantiate({**node, **model_kwargs}, _recursive_=False)


def check_overrides(args: list[str]) -> None:
    """Refuse a command line's config before Hydra starts, with one line (OptionError) instead of Hydra's
    multi-line report: a config-group choice without its file (e.g. sampler=foo names conf/sampler/'s files),
    and, for a single run, any override the composed config refuses (a key it lacks, a malformed value)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from sgmse_nc.errors import OptionError

    multirun = any(a in ("-m", "--multirun") for a in args)
    overrides = [a for a in args if not a.startswith("-")]
    for item in overrides:
        key, sep, value = item.partition("=")
        group = key.lstrip("+~")
        if not sep or "@" in group or not (CONFIG_DIR / group).is_dir() or any(c in value for c in "()[]{}$*"):
            continue  # not a group of ours, or a sweep function / interpolation Hydra expands itself
        for option in (value.split(",") if multirun else [value]):
            if option not in ("", "null") and not (CONFIG_DIR / group / f"{option}.yaml").is_file():
                choices = ", ".join(sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml")))
                raise OptionError(f"{item}: there is no conf/{group}/{option}.yaml; choose one of: {choices}.")
    if multirun or len(overrides) != len(args):
        return  # a sweep's overrides are checked per job; Hydra's own flags change what composes
    try:
        compose_config(overrides)
    except (HydraException, OmegaConfBaseException) as err:
        raise OptionError(f"{' '.join(str(err).split())} (the configs: conf/)") from None
