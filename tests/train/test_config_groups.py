"""Every option of every config group composes and builds with the tiny settings (conf/debug/tiny.yaml).

The options are read from the conf/ folders, so a new file is tested the day it appears; a new group folder
fails `test_every_config_group_has_a_check` until a check for it is added here. Models are built for real
(on the meta device where a pre-trained tower would cost seconds of random initialisation); a sampler not
defined for the composed SDE, or a token encoder without cross-attention, is paired with an option that fits,
and the model's refusal of the pairs that do not fit is tested too.
"""
from __future__ import annotations

import functools
import itertools

import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from sgmse_nc.config import CONFIG_DIR, compose_config
from sgmse_nc.diffusion.sampling import SAMPLERS
from sgmse_nc.encoders import build_encoder
from sgmse_nc.errors import find_user_error
from sgmse_nc.train.run import _instantiate_dict, build_data, build_model
from tests.helpers import noise_class_overrides, random_tower_overrides, synthetic_corpora

MACHINE_SPECIFIC = {"local"}  # conf/local/ is git-ignored: each machine's own paths, not ours to test


def options() -> dict[str, list[str]]:
    """{group: [option, ...]} for every folder of conf/ holding .yaml files (nested: 'hydra/launcher')."""
    groups: dict[str, list[str]] = {}
    for path in sorted(CONFIG_DIR.rglob("*.yaml")):
        group = path.parent.relative_to(CONFIG_DIR).as_posix()
        if group != "." and group.split("/")[0] not in MACHINE_SPECIFIC:
            groups.setdefault(group, []).append(path.stem)
    return groups


OPTIONS = options()
CASES = [(group, option) for group, names in OPTIONS.items() for option in names]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """paths.root_dir of every composition: stand-ins of every corpus the data options read."""
    root = tmp_path_factory.mktemp("root")
    synthetic_corpora(root / "data")
    return root


@functools.lru_cache(maxsize=None)
def _compose(overrides: tuple[str, ...], root: str):
    return compose_config([f"paths.root_dir={root}", f"paths.output_dir={root}/run", "debug=tiny", *overrides])


def tiny(root, *overrides):
    """The composed config with the tiny settings, with the pairings that make a model buildable."""
    plain = _compose(tuple(overrides), str(root))
    overrides = tuple(overrides) + tuple(random_tower_overrides(plain)) + tuple(noise_class_overrides(plain))
    cfg = _compose(overrides, str(root))
    extra = []
    if not defined(cfg.sampler.name, cfg.sde.name):
        extra.append(f"sampler={first_option('sampler', lambda s: defined(sampler_name(s), cfg.sde.name))}")
    if emits_tokens(cfg) and not cfg.backbone.xattn_resolutions:
        extra.append("backbone.xattn_resolutions=[16]")  # tokens enter only through cross-attention
    return _compose(overrides + tuple(extra), str(root)) if extra else cfg


def defined(sampler: str, sde: str) -> bool:
    return SAMPLERS[sampler].sdes is None or sde in SAMPLERS[sampler].sdes


@functools.lru_cache(maxsize=None)
def sampler_name(option: str) -> str:  # conf/sampler/sb.yaml is the registry's dpm at order 1
    return compose_config([f"sampler={option}"]).sampler.name


@functools.lru_cache(maxsize=None)
def sde_name(option: str) -> str:
    return compose_config([f"sde={option}"]).sde.name


def first_option(group: str, fits) -> str:
    return next(option for option in OPTIONS[group] if fits(option))


def has_tower(cfg) -> bool:
    return bool(random_tower_overrides(cfg))


def emits_tokens(cfg) -> bool:
    if has_tower(cfg):  # building one costs seconds even on the meta device; its config says it
        return bool(cfg.encoder.get("tokens"))
    return build_encoder(**OmegaConf.to_container(cfg.encoder, resolve=True)).token_dim > 0


def built_model(cfg):
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    if has_tower(cfg):
        with torch.device("meta"):
            model = build_model(cfg)
        assert next(model.dnn.parameters()).is_meta
        return model
    model = build_model(cfg)
    assert model.sampler_cfg == OmegaConf.to_container(cfg.sampler, resolve=True)
    return model


def enhances(model, frames: int = 16) -> None:
    """The model's own sampler runs on a short noisy spectrogram (N=2, the tiny setting)."""
    bins = model.dnn.image_size  # n_fft // 2 + 1 of the model's spectrogram
    y = torch.randn(1, 1, bins, frames, dtype=torch.complex64, generator=torch.Generator().manual_seed(0))
    x = model.eval().enhance_spec(0.1 * y)
    assert x.shape == y.shape and torch.isfinite(torch.view_as_real(x)).all()


def cpu_trainer(cfg, **kwargs) -> pl.Trainer:
    devices = min(int(cfg.trainer.devices), 2)  # DDP on the CPU: the strategy is set up, no process starts
    return instantiate(cfg.trainer, accelerator="cpu", devices=devices, logger=False, **kwargs)


# ---- one check per group: (root, option) -> builds what the option configures ---------------------------

def check_model_option(group):
    def check(root, option):
        cfg = tiny(root, f"{group}={option}")
        model = built_model(cfg)
        if not has_tower(cfg):
            enhances(model)
    return check


def check_sde(root, option):
    cfg = tiny(root, f"sde={option}")
    assert cfg.sde.name == sde_name(option) and defined(cfg.sampler.name, cfg.sde.name)
    enhances(built_model(cfg))


def check_sampler(root, option):
    overrides = [f"sampler={option}"]
    if not defined(sampler_name(option), _compose(tuple(overrides), str(root)).sde.name):
        overrides.append(f"sde={first_option('sde', lambda s: defined(sampler_name(option), sde_name(s)))}")
    cfg = tiny(root, *overrides)
    assert cfg.sampler.name == sampler_name(option)
    enhances(built_model(cfg))


def check_data(root, option):
    """The datamodule with one batch; a corpus at another rate than the default spec is paired with the spec
    option it fits (the data layer refuses the others at setup, as a user error)."""
    overrides = [f"data={option}", "test_after_fit=true"]  # also the test split
    if "prepare" in _compose((f"data={option}",), str(root)).data:  # a corpus the config makes itself: tiny
        overrides += ["+data.prepare.num_train=4", "+data.prepare.num_valid=2", "+data.prepare.num_test=2"]
    for spec in [(), *[(f"spec={s}",) for s in OPTIONS["spec"]]]:
        cfg = tiny(root, *overrides, *spec)
        try:
            datamodule = build_data(cfg)
            datamodule.setup("fit")
            batch = next(iter(datamodule.train_dataloader()))
            break
        except Exception as err:  # noqa: BLE001 - only a refused sample rate may send us to the next spec
            assert find_user_error(err) and "sample rate" in str(err), err
    else:
        raise AssertionError(f"data={option} fits no spec option")
    assert isinstance(datamodule, pl.LightningDataModule)
    assert batch["x"].shape[0] == batch["y"].shape[0] == cfg.data.batch_size and batch["x"].is_complex()
    assert len(datamodule.test_set) > 0


def check_trainer(root, option):
    cfg = _compose((f"trainer={option}",), str(root))  # the command line's trainer wins over the tiny one
    assert isinstance(cpu_trainer(cfg), pl.Trainer)


def check_logger(root, option):
    cfg = tiny(root, f"logger={option}")
    loggers = _instantiate_dict(cfg.logger)  # wandb: offline unless WANDB_MODE=online; starts lazily
    assert loggers and all(isinstance(logger, pl.loggers.Logger) for logger in loggers)


def check_callbacks(root, option):
    callbacks = _instantiate_dict(tiny(root, f"callbacks={option}").callbacks)
    assert callbacks and all(isinstance(c, pl.Callback) for c in callbacks)


def check_scale(root, option):
    full = compose_config([f"paths.root_dir={root}", f"paths.output_dir={root}/run", "experiment=nc_baseline",
                           f"scale={option}"])
    OmegaConf.to_container(full, resolve=True)
    assert isinstance(cpu_trainer(full), pl.Trainer)
    cfg = tiny(root, "experiment=nc_baseline", f"scale={option}")
    assert (cfg.trainer.devices, cfg.trainer.max_steps, cfg.data.batch_size) == (1, 2, 2)  # tiny wins
    built_model(cfg)


def check_experiment(root, option):
    """At the row's own size on the meta device (no memory), then tiny for real where it has no tower."""
    full = compose_config([f"paths.root_dir={root}", f"paths.output_dir={root}/run", f"experiment={option}"])
    full = compose_config([f"paths.root_dir={root}", f"paths.output_dir={root}/run", f"experiment={option}",
                           *random_tower_overrides(full), *noise_class_overrides(full)])
    assert full.experiment_name == option and "cond_dim" not in full.backbone  # the model takes it from the encoder
    OmegaConf.to_container(full, resolve=True)
    with torch.device("meta"):
        model = build_model(full)
    assert model.encoder.embed_dim == full.encoder.embed_dim and model.cond_drop_prob == full.model.cond_drop_prob
    assert model.sampler_cfg == OmegaConf.to_container(full.sampler, resolve=True)
    cfg = tiny(root, f"experiment={option}")
    if not has_tower(cfg):
        enhances(built_model(cfg))
    assert all(isinstance(c, pl.Callback) for c in _instantiate_dict(cfg.callbacks))
    assert all(isinstance(logger, pl.loggers.Logger) for logger in _instantiate_dict(cfg.logger))


def check_debug(root, option):
    cfg = _compose(("experiment=nc_baseline", "scale=paper", f"debug={option}"), str(root))
    trainer = cpu_trainer(cfg)  # the paper scale's DDP on 4 GPUs becomes one CPU process
    assert trainer.num_devices == 1 and cfg.trainer.accelerator == "cpu" and cfg.trainer.max_steps > 0
    assert sum(p.numel() for p in built_model(cfg).parameters()) < 5e6


def hydra_config(root, *overrides):
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=[f"paths.root_dir={root}", *overrides], return_hydra_config=True)


def check_hydra(root, option):  # conf/hydra/default.yaml: the stable run folders
    cfg = hydra_config(root, f"hydra={option}", "experiment=nc_baseline", "seed=3")
    assert cfg.hydra.job.name == "train" and cfg.hydra.job.chdir is False
    assert OmegaConf.to_container(cfg.hydra.run, resolve=False)["dir"].endswith(
        "${run_key:${hydra.overrides.task},${run_key_ignore}}")  # stable folders: resolved by Hydra at run time


def check_launcher(root, option):
    cfg = hydra_config(root, f"hydra/launcher={option}", "experiment=nc_baseline", "scale=paper")
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    target = launcher.pop("_target_")
    module, name = target.rsplit(".", 1)
    cls = getattr(__import__(module, fromlist=[name]), name)
    assert isinstance(cls(**launcher), cls)  # the plugin accepts every key


def check_hparams_search(root, option):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason='pip install -e ".[sweep]" (in .[dev] too)')
    cfg = hydra_config(root, f"hparams_search={option}", "experiment=cfg_p0.1")
    sweeper = OmegaConf.to_container(cfg.hydra.sweeper, resolve=True)
    assert sweeper["params"] and cfg.optimized_metric in ("valid_loss", "valid_pesq", "valid_estoi", "valid_si_sdr")
    assert type(instantiate(sweeper)).__name__.endswith("Sweeper")


def check_paths(root, option):
    cfg = compose_config([f"paths={option}", f"paths.root_dir={root}", f"paths.output_dir={root}/run"])
    paths = OmegaConf.to_container(cfg.paths, resolve=True)  # the rest follow root_dir (Hydra sets both at run time)
    assert paths["data_dir"].startswith(str(root)) and paths["log_dir"].startswith(str(root))


def check_report(root, option):
    with initialize_config_dir(str(CONFIG_DIR / "report"), version_base="1.3"):
        cfg = compose(option)
    with initialize_config_dir(str(CONFIG_DIR / "report"), version_base="1.3"):
        default = compose("default")
    assert set(cfg) == set(default)  # a report file sets the default's keys, nothing the report would ignore
    OmegaConf.to_container(cfg, resolve=True)
    assert list(cfg.guidance) and list(cfg.metrics)


CHECKS = {
    "backbone": check_model_option("backbone"),
    "encoder": check_model_option("encoder"),
    "spec": check_model_option("spec"),
    "sde": check_sde,
    "sampler": check_sampler,
    "data": check_data,
    "trainer": check_trainer,
    "logger": check_logger,
    "callbacks": check_callbacks,
    "scale": check_scale,
    "experiment": check_experiment,
    "debug": check_debug,
    "hydra": check_hydra,
    "hydra/launcher": check_launcher,
    "hparams_search": check_hparams_search,
    "paths": check_paths,
    "report": check_report,
}


def test_every_config_group_has_a_check():
    missing = sorted(set(OPTIONS) - set(CHECKS))
    assert not missing, f"conf/ groups without a check in {__file__}: {missing}: add one to CHECKS"
    assert not sorted(set(CHECKS) - set(OPTIONS)), "a check for a group that no longer exists"


@pytest.mark.parametrize(("group", "option"), CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_option_composes_and_builds(root, group, option, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    CHECKS[group](root, option)


# ---- the pairs the model refuses --------------------------------------------------------------------------

def test_the_model_refuses_a_sampler_not_defined_for_its_sde(root):
    refused = [(sde, sampler) for sde, sampler in itertools.product(OPTIONS["sde"], OPTIONS["sampler"])
               if not defined(sampler_name(sampler), sde_name(sde))]
    assert refused  # pc on the bridge, sb_sde on OUVE, ...
    for sde, sampler in refused:
        cfg = _compose((f"sde={sde}", f"sampler={sampler}", "encoder=none"), str(root))
        with pytest.raises(Exception, match=f"sampler '{sampler_name(sampler)}' is not defined for sde=") as refusal:
            build_model(cfg)
        assert find_user_error(refusal.value)  # a choice to fix: sgmse-train says so in one error: line, exit 2


def test_the_model_refuses_tokens_without_cross_attention_and_the_reverse(root):
    with pytest.raises(Exception, match="emits tokens"):
        build_model(_compose(("encoder=sequence", "backbone.xattn_resolutions=[]"), str(root)))
    with pytest.raises(Exception, match="emits no tokens"):
        build_model(_compose(("encoder=cnn", "backbone.xattn_resolutions=[16]"), str(root)))
