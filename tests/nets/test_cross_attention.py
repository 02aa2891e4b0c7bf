"""Cross-attention to condition tokens inside NCSN++, and the sequence (token) encoder."""
import pytest
import torch

from sgmse_nc.diffusion.checkpoints import load_backbone_weights
from sgmse_nc.condition import Condition, null_condition
from sgmse_nc.config import build_model_from_config
from sgmse_nc.encoders import build_encoder
from sgmse_nc.nets import NCSNpp
from sgmse_nc.diffusion.model import ScoreModel
from sgmse_nc.nets.conditioning import CrossAttention
from tests.scripts.fit_tiny import main as fit_tiny

TINY = dict(nf=8, ch_mult=(1, 2, 4, 4), num_res_blocks=1, attn_resolutions=(32,))


def spectrograms(b=2, frames=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(b, 1, 256, frames, dtype=torch.cfloat, generator=g) for _ in range(2))


def tokens(b=2, l=5, d=12, seed=1):
    return torch.randn(b, l, d, generator=torch.Generator().manual_seed(seed))


def nets():
    torch.manual_seed(0)
    plain = NCSNpp(**TINY).eval()
    xattn = NCSNpp(**TINY, token_dim=12, xattn_resolutions=(32, 64)).eval()
    load_backbone_weights(xattn, plain.state_dict())  # strict outside the conditioning modules
    return plain, xattn


def randomise_outputs(net):
    with torch.no_grad():
        for block in net.xattn.values():
            torch.nn.init.normal_(block.out.weight, std=0.5)


def test_xattn_parameters_sit_outside_the_sgmse_layout():
    plain, xattn = nets()
    extra = set(xattn.state_dict()) - set(plain.state_dict())
    assert extra and all(k.startswith("xattn.") for k in extra)
    assert set(xattn.xattn) == {"down2_0", "down3_0", "up2", "up3"}  # 64 and 32 bins = levels 2 and 3


def test_fresh_xattn_model_equals_the_unconditional_one():
    plain, xattn = nets()
    x_t, y = spectrograms()
    t = torch.tensor([0.3, 0.7])
    with torch.no_grad():
        assert torch.equal(xattn(x_t, y, t, 10 * tokens()), plain(x_t, y, t))


def test_tokens_change_the_score_and_masked_tokens_do_not():
    plain, xattn = nets()
    randomise_outputs(xattn)
    x_t, y = spectrograms()
    t = torch.tensor([0.3, 0.7])
    z = tokens()
    mask = torch.tensor([[True, True, True, False, False]] * 2)
    changed = z.clone()
    changed[:, 3:] = 100.0  # only padded positions differ
    with torch.no_grad():
        s = xattn(x_t, y, t, Condition(tokens=z, mask=mask))
        assert not torch.allclose(s, plain(x_t, y, t))
        assert torch.equal(s, xattn(x_t, y, t, Condition(tokens=changed, mask=mask)))
        assert not torch.allclose(s, xattn(x_t, y, t, z))  # without the mask they count
        # an all-masked sequence attends to nothing: the unconditional score
        empty = Condition(tokens=z, mask=torch.zeros(2, 5, dtype=torch.bool))
        torch.testing.assert_close(xattn(x_t, y, t, empty), plain(x_t, y, t))


def test_cross_attention_block_gradients_reach_tokens():
    block = CrossAttention(16, 12, heads=4)
    torch.nn.init.normal_(block.out.weight)
    z = tokens().requires_grad_()
    block(torch.randn(2, 16, 4, 8), z).square().sum().backward()
    assert z.grad.abs().sum() > 0 and all(p.grad is not None for p in block.parameters())


def test_configuration_errors():
    with pytest.raises(ValueError, match="xattn_resolutions is\n?.*empty|xattn_resolutions is empty"):
        NCSNpp(**TINY, token_dim=12)
    with pytest.raises(ValueError, match="emits no tokens"):
        NCSNpp(**TINY, xattn_resolutions=(32,))
    with pytest.raises(ValueError, match="not frequency resolutions"):
        NCSNpp(**TINY, token_dim=12, xattn_resolutions=(48,))
    _, xattn = nets()
    x_t, y = spectrograms(1)
    with pytest.raises(ValueError, match="needs `cond`"):
        xattn(x_t, y, torch.tensor([0.5]))
    with pytest.raises(ValueError, match=r"\[B, L, 12\]"):
        xattn(x_t, y, torch.tensor([0.5]), tokens(1, d=4))


def test_sequence_encoder_tokens_keep_time_structure():
    enc = build_encoder("sequence", token_dim=24, num_tokens=16)
    assert (enc.embed_dim, enc.token_dim, enc.num_tokens) == (0, 24, 16)
    r = torch.randn(3, 1, 256, 256, dtype=torch.cfloat)
    z = enc(r)
    assert z.shape == (3, 16, 24) and torch.isfinite(z).all()
    assert enc(r[..., :9]).shape == (3, 16, 24)  # a short reference still gives 16 tokens
    late = r.clone()
    late[..., 208:] *= 10  # louder only at the end: the last tokens change most (a global pool: all alike)
    diff = (enc(late) - z).abs().mean(-1)
    assert diff[:, -3:].mean() > 2 * diff[:, :-3].mean()
    both = build_encoder("sequence", token_dim=24, num_tokens=8, embed_dim=10)(r)
    assert both.embedding.shape == (3, 10) and both.tokens.shape == (3, 8, 24)


def test_model_with_sequence_encoder_and_cross_attention():
    model = build_model_from_config(["backbone=ncsnpp_tiny", "encoder=sequence", "backbone.xattn_resolutions=[32]"],
                                    cond_drop_prob=1.0)
    g = torch.Generator().manual_seed(0)
    c = lambda *s: torch.randn(*s, dtype=torch.complex64, generator=g) * 0.1
    batch = {"x": c(2, 1, 256, 32), "y": c(2, 1, 256, 32), "r": c(2, 1, 256, 24), "r_wav": torch.zeros(2, 3000)}
    model._loss(batch).backward()  # every condition dropped: still every parameter in the graph (DDP)
    assert not [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    model.eval()
    cond = model.encode(batch["r"], batch["r_wav"])
    assert cond.tokens.shape == (2, 16, 256)
    for w in (1.0, 2.0):
        x = model.enhance_spec(batch["y"][..., :21], cond, guidance_scale=w, N=2)
        assert x.shape == (2, 1, 256, 21) and torch.isfinite(torch.view_as_real(x)).all()
    assert model.enhance_spec(batch["y"], None, N=1).shape == batch["y"].shape  # null tokens
    assert not null_condition(cond).tokens.any()


def test_tiny_training_run_sequence_cross_attention(tmp_path):
    fit_tiny(str(tmp_path), "1", "encoder=sequence", "encoder.token_dim=32", "backbone.xattn_resolutions=[32]",
             "model.cond_drop_prob=0.5")
    model = ScoreModel.load_for_inference(tmp_path / "last.ckpt")
    assert model.dnn.token_dim == 32 and set(model.dnn.xattn) == {"down3_0", "up3"}
    assert any(block.out.weight.abs().sum() > 0 for block in model.dnn.xattn.values())  # it trained
