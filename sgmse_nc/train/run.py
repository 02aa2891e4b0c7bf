"""Training run from a resolved Hydra config (train.py is only the entry point)."""
from __future__ import annotations

import logging
import subprocess
from contextlib import nullcontext
import sys
from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_info
from pytorch_lightning.utilities.rank_zero import rank_zero_only
from pytorch_lightning.utilities.exceptions import SIGTERMException

from sgmse_nc.train.callbacks import LastCheckpoint, RankSeed
from sgmse_nc.train.checkpoint_io import SafeCheckpointIO
from sgmse_nc.io import read_json, write_json, write_text_atomic

from sgmse_nc.data.scan import scan_datamodule
from sgmse_nc.data.errors import DataConfigError
from sgmse_nc.devices import check_device
from sgmse_nc.errors import OptionError, UserError, find_user_error
from sgmse_nc.lock import folder_lock
from sgmse_nc.threads import set_threads

log = logging.getLogger(__name__)
METRICS_FILE = "metrics.json"  # a finished run's final metrics (what a sweeper optimises)


class TrainingInterrupted(SystemExit):
    """A run stopped by a signal: last.ckpt holds its state; exits non-zero so scripts do not go on."""

    def __init__(self, signal_name: str, step: int, output_dir: Path):
        self.message = (f"training interrupted by {signal_name} at step {step}; {output_dir}/checkpoints/last.ckpt "
                        f"holds that state. Resume: rerun the same command (ckpt_path=auto resumes).")
        super().__init__(143 if signal_name != "KeyboardInterrupt" else 130)


def _instantiate_dict(node) -> list:
    """Instantiate each `_target_` entry of a callbacks/logger mapping (None or empty -> [])."""
    if not node:
        return []
    return [instantiate(v) for v in node.values() if v is not None and "_target_" in v]


def resolve_ckpt_path(ckpt_path: str | None, output_dir: Path) -> str | None:
    """'auto' resumes from <run folder>/checkpoints/last.ckpt when it exists (else starts afresh); None starts
    afresh but refuses a folder that already holds a run (it would be overwritten)."""
    last = output_dir / "checkpoints" / "last.ckpt"
    if ckpt_path is None:
        if last.is_file():
            raise UserError(f"{last} exists: this run folder already holds a run. Resume it with "
                            f"ckpt_path=auto (the default), or start afresh in another folder "
                            f"(hydra.run.dir=...) or after moving {output_dir} away.")
        return None
    if ckpt_path == "auto":
        if last.is_file():
            log.info("resuming from %s", last)
            return str(last)
        log.info("ckpt_path=auto: no %s yet, starting a new run", last)
        return None
    if not Path(ckpt_path).is_file():
        raise UserError(f"ckpt_path={ckpt_path}: file not found. Give a .ckpt from a run's checkpoints/ "
                        f"folder, or ckpt_path=auto (the default) to resume the run folder's last.ckpt.")
    return ckpt_path


def built_from_config(node: str, build):
    """build() -> the object a config node describes; a constructor refusing the node's values (ValueError,
    Lightning's MisconfigurationException, an unknown keyword) becomes one OptionError line naming the node."""
    from hydra.errors import InstantiationException
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    try:
        return build()
    except (InstantiationException, MisconfigurationException, ValueError, TypeError) as err:
        if find_user_error(err) is not None:
            raise
        cause = err
        while cause.__cause__ is not None:  # Hydra wraps the constructor's own error
            cause = cause.__cause__
        if isinstance(cause, TypeError) and "keyword argument" not in str(cause):
            raise  # a bug, not a value the user gave
        if not isinstance(cause, (MisconfigurationException, ValueError, TypeError)):
            raise
        raise OptionError(f"{node}: {' '.join(str(cause).split())} (conf/{node}/ and the command line's "
                          f"{node}.* overrides)") from err


def check_accelerator(accelerator) -> None:
    """trainer.accelerator=gpu/cuda/mps on a machine without one: one line naming what this machine has."""
    device = {"gpu": "cuda"}.get(str(accelerator), str(accelerator))
    if device in ("cuda", "mps"):
        check_device(device, option=f"trainer.accelerator={accelerator}")


def build_data(cfg: DictConfig):
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    prepare = data_cfg.pop("prepare", None)
    if not cfg.get("test_after_fit"):
        data_cfg.pop("test", None)  # built only when used: a missing test folder must not stop training
    if prepare:
        instantiate(prepare)
    datasets = {}
    for split in ("train", "valid", "test"):  # one by one, so that an error names its config key
        node = data_cfg.pop(split, None)
        if node is None:
            continue
        try:
            datasets[split] = instantiate(node)
        except Exception as err:
            user = find_user_error(err)
            if user is None:
                raise
            key = f"data.{split}" + (f".{user.key}" if isinstance(user, DataConfigError) else "")
            raise DataConfigError(key, f"{key}: {user}") from err
    return instantiate(data_cfg, **datasets)


def noise_classes(cfg: DictConfig, datamodule, ckpt_path: str | None) -> list[str] | None:
    """The vocabulary of the auxiliary noise-class head (None when model.noise_class_loss.weight is 0): a resumed
    run's own (its checkpoint's), else the config's list, else the sorted class names data.train can give."""
    node = cfg.model.get("noise_class_loss") or {}
    if not float(node.get("weight") or 0.0) > 0:
        return None
    given = None if node.get("classes") is None else [str(c) for c in node.classes]
    if ckpt_path:
        from sgmse_nc.diffusion.checkpoints import read_our_checkpoint

        stored = (read_our_checkpoint(ckpt_path)["hyper_parameters"].get("noise_class_loss") or {}).get("classes")
        if stored is not None:
            if given is not None and given != list(stored):
                raise OptionError(f"model.noise_class_loss.classes={given}, but {ckpt_path} was trained with "
                                  f"{list(stored)}: drop the override to resume (the indices must not move).")
            return list(stored)
    if given is not None:
        return given
    classes = list(getattr(getattr(datamodule, "train_set", None), "noise_classes", None) or [])
    if not classes:
        raise OptionError(f"model.noise_class_loss.weight={node.weight} needs noise class labels, and data.train "
                          f"has none: a manifest column (category, noise_category, noise_class or noise_type, or "
                          f"data.train.label_column) for paired folders, labelled pools (labels: subfolder or a csv) "
                          f"for dynamic mixing, or the names in model.noise_class_loss.classes.")
    rank_zero_info(f"noise-class head: {len(classes)} classes from data.train ({', '.join(classes)})")
    return classes


def build_model(cfg: DictConfig, noise_classes: list[str] | None = None):
    """The model the config describes; `noise_classes`: the noise-class head's vocabulary (see noise_classes)."""
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    if noise_classes is not None:
        model_cfg["noise_class_loss"] = {**(model_cfg.get("noise_class_loss") or {}), "classes": noise_classes}
    model = instantiate(model_cfg, _recursive_=False)
    if cfg.get("init_from_sgmse"):
        model.init_from_sgmse(cfg.init_from_sgmse)
        log.info("backbone warm-started from SGMSE+ checkpoint %s", cfg.init_from_sgmse)
    if cfg.get("compile"):
        model.dnn.compile_real_score()  # the complex STFT math stays outside; parameter names unchanged
    return model


def effective_batch(cfg: DictConfig, trainer: pl.Trainer) -> int:
    return int(cfg.data.batch_size) * trainer.num_devices * trainer.num_nodes * trainer.accumulate_grad_batches


def _world_size(cfg: DictConfig) -> int:
    devices = cfg.trainer.get("devices", 1)
    count = len(devices) if OmegaConf.is_list(devices) else (int(devices) if str(devices).isdigit() else 1)
    return count * int(cfg.trainer.get("num_nodes", 1))


def _multirun_job_needs_own_processes(cfg: DictConfig) -> bool:
    """A local sweep job on several devices. Lightning starts DDP ranks by re-running the command line, which
    for `-m` is the whole sweep; such a job instead runs as its own single-run command (train_subprocess)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return False
    hc = HydraConfig.get()
    local = hc.launcher._target_.endswith("BasicLauncher")  # submitit starts one task per rank itself
    return hc.mode == RunMode.MULTIRUN and local and _world_size(cfg) > 1


def train_subprocess(cfg: DictConfig) -> dict:
    """Run this sweep job as `python train.py <its overrides> hydra.run.dir=<its folder>`: its DDP ranks are
    started for this job only. Returns the job's final metrics (written by the child)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd

    hc = HydraConfig.get()
    output_dir = Path(hc.runtime.output_dir)
    script = Path(get_original_cwd()) / "train.py"
    quoted = str(output_dir).replace("\\", "\\\\").replace("'", "\\'")
    command = [sys.executable, str(script), *hc.overrides.task, f"hydra.run.dir='{quoted}'"]
    rank_zero_info(f"sweep job {hc.job.num}: {' '.join(command)}")
    returncode = subprocess.run(command, cwd=get_original_cwd()).returncode
    if returncode:
        raise SystemExit(returncode)
    return read_json(output_dir / METRICS_FILE) or {}


def train(cfg: DictConfig) -> dict:
    """Fit the model; returns the trainer's final metrics (for Hydra sweepers)."""
    if _multirun_job_needs_own_processes(cfg):
        return train_subprocess(cfg)
    output_dir = Path(cfg.paths.output_dir)
    # one writer per run folder (a rerun or a sweep job with the same overrides is refused); DDP ranks > 0 run
    # inside rank 0's lock
    with folder_lock(output_dir, "training") if rank_zero_only.rank == 0 else nullcontext():
        if rank_zero_only.rank == 0:
            write_hydra_record(cfg, output_dir)
        return _fit(cfg, output_dir)


def write_hydra_record(cfg: DictConfig, output_dir: Path) -> None:
    """<run folder>/.hydra/{config,hydra,overrides}.yaml, as Hydra writes them, but under the run folder's lock
    (conf/hydra/default.yaml turns Hydra's own early write off: it came before the lock)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.instance().cfg
    record = {"config.yaml": cfg, "hydra.yaml": hydra_cfg, "overrides.yaml": hydra_cfg.hydra.overrides.task}
    for name, node in record.items():
        write_text_atomic(output_dir / ".hydra" / name, OmegaConf.to_yaml(node))


def _fit(cfg: DictConfig, output_dir: Path) -> dict:
    pl.seed_everything(cfg.seed, workers=True)  # identical initial weights on every rank
    set_threads(cfg.get("threads", 1))
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), output_dir)
    datamodule = built_from_config("data", lambda: build_data(cfg))
    scan_datamodule(datamodule)  # every data file's header, before anything is built or trained
    classes = noise_classes(cfg, datamodule, ckpt_path)
    model = built_from_config("model", lambda: build_model(cfg, classes))
    callbacks = [RankSeed(cfg.seed), *built_from_config("callbacks", lambda: _instantiate_dict(cfg.get("callbacks")))]
    check_accelerator(cfg.trainer.get("accelerator", "auto"))
    trainer = built_from_config("trainer", lambda: instantiate(
        cfg.trainer, callbacks=callbacks, logger=_instantiate_dict(cfg.get("logger")) or False,
        # every checkpoint checked for NaN/Inf and written atomically, beside the config's own plugins
        plugins=[*(instantiate(cfg.trainer.get("plugins")) or []), SafeCheckpointIO()],
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks)))
    rank_zero_info(f"effective batch {effective_batch(cfg, trainer)} = {cfg.data.batch_size} per device x "
                   f"{trainer.num_devices} device(s) x {trainer.num_nodes} node(s) x "
                   f"{trainer.accumulate_grad_batches} accumulated; precision {trainer.precision}")
    if trainer.is_global_zero:
        write_text_atomic(output_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    last = next((c for c in callbacks if isinstance(c, LastCheckpoint)), None)
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    except SIGTERMException:
        pass  # Lightning's graceful stop; LastCheckpoint saved, reported below
    if last is not None and last.interrupted:
        interrupted = TrainingInterrupted(last.interrupted, trainer.global_step, output_dir)
        log.error(interrupted.message)
        print(f"error: {interrupted.message}", file=sys.stderr)
        raise interrupted
    if cfg.get("test_after_fit"):
        trainer.test(model, datamodule=datamodule)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if not metrics:  # relaunch of a finished run: fit had nothing left to do
        metrics = read_json(output_dir / METRICS_FILE) or {}
    if trainer.is_global_zero:
        write_json(output_dir / METRICS_FILE, metrics)
    log.info("run folder: %s", output_dir)
    return metrics


def optimized_value(cfg: DictConfig, metrics: dict) -> float | None:
    """The value a Hydra sweeper optimises: metrics[cfg.optimized_metric] (None when unset)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    name = cfg.get("optimized_metric")
    if not name:
        return None
    if name not in metrics:
        hc = HydraConfig.get() if HydraConfig.initialized() else None
        if hc is None or hc.mode != RunMode.MULTIRUN or hc.sweeper._target_.endswith("BasicSweeper"):
            log.warning("optimized_metric=%s was not logged by this run", name)
            return None  # nothing optimises the value (a single run, a grid sweep)
        raise KeyError(f"optimized_metric={name} was not logged by this run (logged: {sorted(metrics)}). Pick one "
                       f"of those, or make validation run (data.num_eval_files > 0 for valid_pesq/estoi/si_sdr).")
    return metrics[name]

