"""LoRA on the CLAP tower (peft): it starts as the frozen tower, trains its adapters and the projection only (in
float32 under any autocast), and a checkpoint holds those alone: loading rebuilds the tower from its weight file,
and enhances exactly as the model it was saved from. (The two-process DDP run: test_ddp_encoders.py, slow.)"""
import pytest
import torch
from torch import nn

from sgmse_nc.diffusion.model import ScoreModel
from sgmse_nc.encoders import build_encoder
from sgmse_nc.encoders.laion import WeightsError
from sgmse_nc.encoders.lora import add_lora
from sgmse_nc.encoders.pretrained import fill_clip, resample_to
from sgmse_nc.enhance.api import Enhancer
from sgmse_nc.errors import OptionError
from tests.helpers import clap_checkpoint
from tests.scripts.fit_tiny import main as fit_tiny

SECONDS = 2  # the tower's clip (CLAP's is 10 s): the same graph, a fifth of the time
LORA = {"rank": 4, "alpha": 8, "targets": ["qkv", "attn.proj"]}


@pytest.fixture(scope="module")
def clap_ckpt(tmp_path_factory):
    return clap_checkpoint(tmp_path_factory.mktemp("clap") / "630k-audioset-best.pt")


@pytest.fixture(scope="module")
def adapted(clap_ckpt):
    torch.manual_seed(0)
    return build_encoder("clap", weights=str(clap_ckpt[0]), embed_dim=16, min_seconds=SECONDS, max_seconds=SECONDS,
                         lora=LORA)


def refs(b=2, seconds=0.5, seed=0):
    return 0.1 * torch.randn(b, int(16000 * seconds), generator=torch.Generator().manual_seed(seed))


def base_weights(enc) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in enc.tower_modules.state_dict().items() if "lora_" not in k}


def adapter_weights(enc) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in enc.adapters.state_dict().items()}


def test_adapters_start_at_zero_so_the_tower_is_the_frozen_one(clap_ckpt, adapted):
    _, tower, head = clap_ckpt  # the tower as laion-clap's classes built it, the weights in the file
    layers = [n for n, m in tower.named_modules() if n.endswith(("attn.qkv", "attn.proj"))]
    assert sorted(adapted.adapters) == sorted(n.replace(".", "/") for n in layers) and len(layers) == 24
    for name, pair in adapted.adapters.items():
        a, b = pair["A"]["default"].weight, pair["B"]["default"].weight
        assert a.shape[0] == 4 and b.shape[1] == 4 and a.abs().sum() > 0 and not b.any(), name
    r_wav = refs()
    x = fill_clip(resample_to(r_wav, 48000), 48000 * SECONDS, 48000 * SECONDS)
    with torch.no_grad():
        expected = nn.functional.normalize(head(tower({"waveform": x}, device="cpu")["embedding"]), dim=-1)
        assert torch.allclose(adapted.tower_embedding(r_wav)[0], expected, atol=1e-6)


def test_a_step_moves_the_adapters_and_not_the_tower_in_float32_under_autocast(adapted):
    trainable = {n for n, p in adapted.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in adapted.named_parameters()}  # the tower is not among the parameters
    assert trainable == ({f"adapters.{k}" for k in adapted.adapters.state_dict()}
                         | {f"proj.{k}" for k in adapted.proj.state_dict()})
    assert set(adapted.state_dict()) == trainable | {"weights_sha256"}  # nor in the state (checkpoints)
    base, before = base_weights(adapted), adapter_weights(adapted)
    r_wav = refs(1, seed=1)
    with torch.no_grad():
        z_before = adapted.tower_embedding(r_wav)[0]
    optimizer = torch.optim.Adam([p for p in adapted.parameters() if p.requires_grad], lr=1e-2)
    adapted.train()
    for _ in range(2):  # the first step moves B only (A's gradient is B^T ... = 0 while B = 0), the second both
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.float16):  # what trainer.precision=16-mixed runs
            loss = adapted(None, r_wav).square().sum()
        loss.backward()
        assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in adapted.parameters())
        optimizer.step()
    after = adapter_weights(adapted)
    assert all(not torch.equal(before[k], after[k]) for k in before), "an adapter matrix did not move"
    assert all(torch.equal(v, base_weights(adapted)[k]) for k, v in base.items())  # the tower's own weights
    adapted.eval()
    with torch.no_grad():
        z32 = adapted.tower_embedding(r_wav)[0]
        assert not torch.allclose(z32, z_before, atol=1e-4)  # the adapters change what the tower computes
        for dtype in (torch.float16, torch.bfloat16):
            with torch.autocast("cpu", dtype=dtype):
                z = adapted.tower_embedding(r_wav)[0]
            assert z.dtype == torch.float32 and torch.equal(z, z32), dtype  # the adapted tower stays in float32


def test_checkpoint_holds_adapters_and_projection_and_enhances_as_the_trained_model(clap_ckpt, tmp_path):
    weights = tmp_path / "weights" / "630k-audioset-best.pt"
    weights.parent.mkdir()
    weights.write_bytes(clap_ckpt[0].read_bytes())
    trained = fit_tiny(str(tmp_path), "1", "encoder=clap", f"encoder.weights={weights}", "encoder.embed_dim=16",
                       f"encoder.lora.rank={LORA['rank']}", f"encoder.min_seconds={SECONDS}",
                       f"encoder.max_seconds={SECONDS}", "model.lr=0.01")  # steps the adapters' effect shows in
    ckpt_path = tmp_path / "last.ckpt"
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    encoder_keys = {k.removeprefix("encoder.") for k in ckpt["state_dict"] if k.startswith("encoder.")}
    assert encoder_keys == set(trained.encoder.state_dict())
    assert {k.split(".")[0] for k in encoder_keys} == {"adapters", "proj", "weights_sha256"}
    assert {n.split(".")[1] for n in ckpt["ema"]["shadow"] if n.startswith("encoder.")} == {"adapters", "proj"}
    assert ckpt_path.stat().st_size < 20e6  # the 31 M-parameter tower (125 MB) is not in it

    moved = tmp_path / "moved.pt"
    weights.rename(moved)
    with pytest.raises(WeightsError, match=rf"{weights}: the clap tower weights of {ckpt_path} are not found.*"
                                           r"LoRA adapters.*--encoder-weights"):
        ScoreModel.load_for_inference(ckpt_path)
    loaded = ScoreModel.load_for_inference(ckpt_path, encoder_weights=moved)  # the EMA weights
    trained.ema.copy_to(trained)
    trained_adapters, loaded_adapters = adapter_weights(trained.encoder), adapter_weights(loaded.encoder)
    assert any(v.any() for k, v in trained_adapters.items() if ".B." in k)  # trained: B is no longer zero
    assert all(torch.equal(v, loaded_adapters[k]) for k, v in trained_adapters.items())
    noisy, reference = refs(1, 1.0, seed=2)[0], refs(1, 0.5, seed=3)[0]
    outputs = [Enhancer(model).enhance(noisy, 16000, reference=reference, seed=0) for model in (trained, loaded)]
    assert torch.equal(*outputs) and outputs[0].abs().sum() > 0
    with torch.no_grad():  # the output depends on the adapters, so the equality above tests them
        for name, p in loaded.encoder.adapters.named_parameters():
            if ".B." in name:
                p.zero_()
    assert not torch.equal(Enhancer(loaded).enhance(noisy, 16000, reference=reference, seed=0), outputs[0])


def test_lora_settings_are_checked_with_the_option_named():
    with pytest.raises(OptionError, match="encoder.lora.rank=4 with encoder.freeze=false"):
        build_encoder("clap", random_init=True, freeze=False, lora={"rank": 4})
    with pytest.raises(OptionError, match=r"encoder.lora.rank=-1"):
        build_encoder("clap", random_init=True, lora={"rank": -1})
    with pytest.raises(OptionError, match=r"encoder.lora.alpha=0"):
        build_encoder("clap", random_init=True, lora={"rank": 4, "alpha": 0})
    with pytest.raises(OptionError, match=r"encoder.lora.dropout: not a LoRA setting"):
        build_encoder("clap", random_init=True, lora={"rank": 4, "dropout": 0.1})
    tower = nn.Sequential()
    tower.add_module("block", nn.ModuleDict({"qkv": nn.Linear(4, 12), "fc": nn.Linear(4, 4)}))
    with pytest.raises(OptionError, match=r"encoder.lora.targets=\['query'\].*block.fc, block.qkv"):
        add_lora(tower, 2, 4.0, ["query"])
    adapters = add_lora(tower, 2, 4.0, ["qkv"])
    assert list(adapters) == ["block/qkv"] and not any(p.requires_grad for p in tower.block.fc.parameters())
