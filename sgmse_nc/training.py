"""Training run from a resolved Hydra config (train.py is only the entry point)."""
from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from sgmse_nc.data.scan import scan_datamodule
from sgmse_nc.errors import UserError

log = logging.getLogger(__name__)


def _instantiate_dict(node) -> list:
    """Instantiate each `_target_` entry of a callbacks/logger mapping (None or empty -> [])."""
    if not node:
        return []
    return [instantiate(v) for v in node.values() if v is not None and "_target_" in v]


def resolve_ckpt_path(ckpt_path: str | None, output_dir: Path) -> str | None:
    """'auto' resumes from <run folder>/checkpoints/last.ckpt when it exists (else starts afresh)."""
    if ckpt_path is None:
        return None
    if ckpt_path == "auto":
        last = output_dir / "checkpoints" / "last.ckpt"
        if last.is_file():
            log.info("resuming from %s", last)
            return str(last)
        log.info("ckpt_path=auto: no %s yet, starting a new run", last)
        return None
    if not Path(ckpt_path).is_file():
        raise UserError(f"ckpt_path={ckpt_path}: file not found. Give a .ckpt from a run's checkpoints/ "
                                f"folder, or ckpt_path=auto with hydra.run.dir=<that run folder>.")
    return ckpt_path


def build_data(cfg: DictConfig):
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    prepare = data_cfg.pop("prepare", None)
    if prepare:
        instantiate(prepare)
    return instantiate(data_cfg)


def build_model(cfg: DictConfig):
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    model = instantiate(model_cfg, _recursive_=False)
    if cfg.get("init_from_sgmse"):
        from sgmse_nc.checkpoints import load_backbone_weights, load_sgmse_checkpoint

        state = load_sgmse_checkpoint(cfg.init_from_sgmse)
        load_backbone_weights(model.dnn, state["backbone_state"])
        model.ema = type(model.ema)(model, model.ema.decay)  # average from the warm-started weights
        log.info("backbone warm-started from SGMSE+ checkpoint %s", cfg.init_from_sgmse)
    return model


def train(cfg: DictConfig) -> dict:
    """Fit the model; returns the trainer's final metrics (for Hydra sweepers)."""
    pl.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    datamodule = build_data(cfg)
    scan_datamodule(datamodule)  # every data file's header, before anything is built or trained
    model = build_model(cfg)
    trainer = instantiate(cfg.trainer, callbacks=_instantiate_dict(cfg.get("callbacks")),
                          logger=_instantiate_dict(cfg.get("logger")) or False)
    OmegaConf.save(cfg, output_dir / "config.yaml", resolve=True)
    trainer.fit(model, datamodule=datamodule, ckpt_path=resolve_ckpt_path(cfg.get("ckpt_path"), output_dir))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    log.info("run folder: %s", output_dir)
    return metrics
