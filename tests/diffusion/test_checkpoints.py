"""Reading SGMSE+ Lightning checkpoints without sgmse's classes (fake checkpoints built here)."""
import os
import pickle
import sys
import types

import pytest
import torch

from sgmse_nc.diffusion.checkpoints import CheckpointError, load_backbone_weights, load_sgmse_checkpoint
from sgmse_nc.nets import NCSNpp

TINY = dict(nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(128,))
FAKE_MODULE = "fake_sgmse_data_module"  # importable only while the checkpoint is written


def tiny_net(seed: int, **kw) -> NCSNpp:
    torch.manual_seed(seed)
    net = NCSNpp(**TINY, **kw).eval()
    with torch.no_grad():  # init_scale=0 leaves the output ~bias only: make every weight matter
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net


class Shell:
    """Runs a command when unpickled by a plain unpickler; the loader must never run it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def save_fake_sgmse_checkpoint(path, state_net, *, ema=None, hparams=None, prefix="dnn."):
    """An SGMSE+-like checkpoint: sgmse's data-module class pickled into the hyper-parameters."""
    module = types.ModuleType(FAKE_MODULE)
    module.SpecsDataModule = type("SpecsDataModule", (), {"__module__": FAKE_MODULE})
    module.AttributeDict = type("AttributeDict", (dict,), {"__module__": FAKE_MODULE})
    sys.modules[FAKE_MODULE] = module
    try:
        hp = module.AttributeDict(backbone="ncsnpp", sde="ouve", theta=1.5, sigma_min=0.05, sigma_max=0.5,
                                  ch_mult=list(TINY["ch_mult"]), lr=1e-4,
                                  data_module_cls=module.SpecsDataModule, data_module=module.SpecsDataModule())
        hp.update(hparams or {})
        ckpt = {"epoch": 3, "pytorch-lightning_version": "2.0.0", "hyper_parameters": hp,
                "state_dict": {prefix + k: v for k, v in state_net.state_dict().items()}}
        if ema is not None:
            ckpt["ema"] = ema
        torch.save(ckpt, path)
    finally:
        del sys.modules[FAKE_MODULE]
    return path


def params(net):
    return [p.detach().clone() for p in net.parameters()]


def score(net, cond=None):
    g = torch.Generator().manual_seed(7)
    x_t, y = (torch.randn(1, 1, 256, 16, dtype=torch.cfloat, generator=g) for _ in range(2))
    with torch.no_grad():
        return net(x_t, y, torch.tensor([0.4]), cond)


@pytest.fixture
def nets():
    return tiny_net(1), tiny_net(2)  # (EMA weights, raw weights)


def test_plain_torch_load_fails_but_loader_reads_ema_weights(tmp_path, nets):
    ema_net, raw_net = nets
    path = save_fake_sgmse_checkpoint(tmp_path / "sgmse.ckpt", ema_net, ema={
        "decay": 0.999, "num_updates": 10, "shadow_params": params(ema_net), "collected_params": params(raw_net)})
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)  # the situation the loader exists for (weights-only unpickling, torch >= 2.6)

    loaded = load_sgmse_checkpoint(path)
    assert loaded["ema_used"] is True
    assert loaded["hparams"]["backbone"] == "ncsnpp" and loaded["hparams"]["sigma_max"] == 0.5
    assert loaded["hparams"]["data_module_cls"] == f"{FAKE_MODULE}.SpecsDataModule"
    assert "data_module" not in loaded["hparams"]

    conditional = NCSNpp(**TINY, cond_dim=16).eval()
    untouched = load_backbone_weights(conditional, loaded["backbone_state"])
    assert untouched and all(k.startswith("cond_proj.") for k in untouched)
    assert torch.equal(score(conditional, torch.randn(1, 16)), score(ema_net))


def test_raw_weights_come_from_collected_params(tmp_path, nets):
    ema_net, raw_net = nets
    path = save_fake_sgmse_checkpoint(tmp_path / "sgmse.ckpt", ema_net, ema={
        "decay": 0.999, "num_updates": 10, "shadow_params": params(ema_net), "collected_params": params(raw_net)})
    loaded = load_sgmse_checkpoint(path, use_ema=False)
    assert loaded["ema_used"] is False
    net = NCSNpp(**TINY).eval()
    load_backbone_weights(net, loaded["backbone_state"])
    assert torch.equal(score(net), score(raw_net))


@pytest.mark.parametrize("collected", ["none", "stale"])
def test_checkpoint_saved_while_training(tmp_path, nets, collected):
    """state_dict holds the raw weights; EMA comes from shadow_params. torch_ema keeps collected_params
    after restore(), so a file saved in training mode may carry stale ones: they must not be used."""
    ema_net, raw_net = nets
    stale = params(tiny_net(3)) if collected == "stale" else None
    path = save_fake_sgmse_checkpoint(tmp_path / "train.ckpt", raw_net, ema={
        "decay": 0.999, "num_updates": 10, "shadow_params": params(ema_net), "collected_params": stale})
    for use_ema, expected in ((True, ema_net), (False, raw_net)):
        loaded = load_sgmse_checkpoint(path, use_ema=use_ema)
        assert loaded["ema_used"] is use_ema
        net = NCSNpp(**TINY).eval()
        load_backbone_weights(net, loaded["backbone_state"])
        assert torch.equal(score(net), score(expected))


def test_checkpoint_without_ema(tmp_path, nets):
    path = save_fake_sgmse_checkpoint(tmp_path / "no_ema.ckpt", nets[1])
    loaded = load_sgmse_checkpoint(path)
    assert loaded["ema_used"] is False
    assert set(loaded["backbone_state"]) == set(nets[1].state_dict())


def test_unpickling_runs_no_foreign_code(tmp_path, nets):
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(Shell(control)))  # a plain unpickler does run it
    assert control.exists()
    marker = tmp_path / "pwned"
    path = save_fake_sgmse_checkpoint(tmp_path / "evil.ckpt", nets[0], hparams={"payload": Shell(marker)})
    loaded = load_sgmse_checkpoint(path)
    assert not marker.exists()
    assert "payload" not in loaded["hparams"]


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.ckpt"
    with pytest.raises(CheckpointError, match="nowhere.ckpt.*not found"):
        load_sgmse_checkpoint(path)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.ckpt"
    path.write_text("this is not a checkpoint\n")
    with pytest.raises(CheckpointError, match="notes.ckpt.*not a PyTorch checkpoint"):
        load_sgmse_checkpoint(path)


def test_checkpoint_without_dnn_weights(tmp_path, nets):
    path = save_fake_sgmse_checkpoint(tmp_path / "other.ckpt", nets[0], prefix="encoder.")
    with pytest.raises(CheckpointError, match="other.ckpt.*not an SGMSE\\+ checkpoint"):
        load_sgmse_checkpoint(path)


def test_other_backbone_is_refused(tmp_path, nets):
    path = save_fake_sgmse_checkpoint(tmp_path / "dcunet.ckpt", nets[0], hparams={"backbone": "dcunet"})
    with pytest.raises(CheckpointError, match="dcunet.ckpt.*'dcunet'"):
        load_sgmse_checkpoint(path)


def test_mismatched_backbone_lists_the_differences(nets):
    wider = NCSNpp(**{**TINY, "nf": 16})
    with pytest.raises(CheckpointError, match="shape mismatch") as err:
        load_backbone_weights(wider, nets[0].state_dict())
    assert "all_modules.0.W" in str(err.value)
    deeper = NCSNpp(**{**TINY, "ch_mult": (1, 2, 2)})
    with pytest.raises(CheckpointError, match="missing in checkpoint"):
        load_backbone_weights(deeper, nets[0].state_dict())


def test_init_from_sgmse_warm_starts_the_backbone_and_its_ema(tmp_path, nets):
    from sgmse_nc.config import compose_config
    from sgmse_nc.train.run import build_model

    ema, raw = nets
    path = save_fake_sgmse_checkpoint(tmp_path / "sgmse.ckpt", ema, ema={"collected_params": params(raw)})
    overrides = ["backbone=ncsnpp_tiny", "encoder=cnn", "backbone.ch_mult=[1,2]", "backbone.attn_resolutions=[128]",
                 "sde=ouve", "sampler=pc",  # the checkpoint's OUVE score model (the demo default is a bridge)
                 f"paths.root_dir={tmp_path}", f"paths.output_dir={tmp_path}/run"]
    fresh = build_model(compose_config(overrides))
    model = build_model(compose_config(overrides + [f"init_from_sgmse={path}"]))
    state = model.dnn.state_dict()
    for key, value in ema.state_dict().items():  # SGMSE+'s EMA weights, not its raw ones
        assert torch.equal(state[key], value), key
    assert not model.dnn.cond_proj.net[-1].weight.any()  # conditioning starts at zero: SGMSE+'s score at first
    d = model.encoder.embed_dim  # so any condition gives the warm-started score
    torch.testing.assert_close(score(model.dnn, torch.randn(1, d)), score(model.dnn, torch.zeros(1, d)))
    # the model's EMA averages from the warm-started weights, not from the random ones it was built with
    shadow = dict(zip(model.ema.names, model.ema.shadow))
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    assert len(trainable) == len(shadow)
    for name, p in trainable:
        assert torch.equal(shadow[name], p.detach()), name
    assert not torch.equal(dict(fresh.named_parameters())["dnn.all_modules.3.weight"], state["all_modules.3.weight"])
