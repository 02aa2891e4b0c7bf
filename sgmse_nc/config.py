"""Compose the project's Hydra configs outside train.py (tests, benches, notebooks), with the same
defaults lists and overrides as the command line; and the `run_key` resolver that names run folders."""
from __future__ import annotations

import fnmatch
import hashlib
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
