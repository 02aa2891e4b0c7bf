"""The ddp / wandb / slurm configs instantiate on the CPU; in the slow set every experiment trains two steps with
the tiny settings (debug=tiny). test_config_groups builds every option of every group, experiments included."""
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from sgmse_nc.config import CONFIG_DIR, compose_config
from sgmse_nc.train.run import _instantiate_dict, build_model, train
from tests.helpers import random_tower_overrides, synthetic_corpora

EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))


def compose_experiment(name, *overrides, root="/tmp/x"):
    return compose_config([f"experiment={name}", f"paths.root_dir={root}", f"paths.output_dir={root}/run",
                           *overrides])


def test_ddp_trainer_instantiates_on_the_cpu(tmp_path):
    cfg = compose_experiment("nc_baseline", "trainer=ddp", "scale=none", root=str(tmp_path))
    assert (cfg.trainer.devices, cfg.trainer.strategy.find_unused_parameters) == (4, False)
    trainer = instantiate(cfg.trainer, accelerator="cpu", devices=2, logger=False)  # no process starts yet
    assert isinstance(trainer.strategy, pl.strategies.DDPStrategy)
    assert trainer.num_devices == 2 and trainer.world_size == 2


def test_wandb_logger_is_offline_by_default(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    cfg = compose_experiment("demo", "logger=wandb", root=str(tmp_path))
    (logger,) = _instantiate_dict(cfg.logger)  # the run itself starts lazily, on the first log call
    assert isinstance(logger, pl.loggers.WandbLogger)
    assert logger._wandb_init["mode"] == "offline" and logger._wandb_init["name"] == "demo"
    assert logger.save_dir == str(tmp_path / "run")
    monkeypatch.setenv("WANDB_MODE", "online")
    assert compose_experiment("demo", "logger=wandb", root=str(tmp_path)).logger.wandb.mode == "online"


def test_slurm_launcher_takes_its_shape_from_the_trainer(tmp_path):
    overrides = ["experiment=nc_baseline", "trainer=ddp", "scale=none", "trainer.num_nodes=2", "hydra/launcher=slurm",
                 f"paths.root_dir={tmp_path}"]
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.nodes, launcher.gpus_per_node, launcher.tasks_per_node) == (2, 4, 4)  # one task per GPU
    assert launcher.max_num_timeout > 0  # requeued runs resume (ckpt_path=auto)
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

    node = {k: v for k, v in OmegaConf.to_container(launcher, resolve=False).items() if k != "_target_"}
    assert isinstance(SlurmLauncher(**node), SlurmLauncher)  # the plugin accepts every key


# ---------------------------------------------------------------------------------------- slow: train each

@pytest.mark.slow
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_trains_two_steps_with_the_tiny_settings(name, tmp_path):
    synthetic_corpora(tmp_path / "data")
    composed = compose_experiment(name)
    overrides = ["debug=tiny"] + (["data.train.length=4", "data.valid.length=2"]  # a short epoch of mixtures
                                  if composed.data.train._target_.endswith("MixingDataset") else [])
    overrides += random_tower_overrides(composed)
    if name == "demo":  # its own corpus, made by the data config's prepare step
        overrides += ["+data.prepare.num_train=4", "+data.prepare.num_valid=2", "+data.prepare.num_test=2"]
    cfg = compose_experiment(name, *overrides, root=str(tmp_path))
    (tmp_path / "run").mkdir()  # Hydra makes the run folder; train() is called directly here
    metrics = train(cfg)
    assert np.isfinite(metrics["train_loss_step"]) and np.isfinite(metrics["valid_loss"])
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 2
