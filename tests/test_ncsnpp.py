"""NCSN++ backbone: shapes, SGMSE+ state-dict layout, t-scaling, conditioning, FIR resampling."""
import hashlib
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from sgmse_nc.nets import NCSNpp, count_parameters
from sgmse_nc.nets.resample import fir_downsample, fir_kernel_2d, fir_upsample, upfirdn2d

CONF = Path(__file__).resolve().parents[1] / "conf"
# sha256 over "key:shape" lines of the reference sgmse NCSNpp() state dict (sp-uhh/sgmse ae690e8)
REFERENCE_LAYOUT_SHA256 = "d625c0e59482a3b7ee813b453a89d40bceaefa5deec0080797de0132a89e0326"
REFERENCE_NUM_PARAMETERS = 65_590_822


def backbone_from_config(name: str, cond_dim: int = 0) -> NCSNpp:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name=f"backbone/{name}")
    cfg.backbone.cond_dim = cond_dim
    return instantiate(cfg.backbone)


def spectrograms(batch: int, frames: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x_t, y = (torch.randn(batch, 1, 256, frames, dtype=torch.cfloat, generator=g) for _ in range(2))
    return x_t, y


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return backbone_from_config("ncsnpp_tiny").eval()


@pytest.mark.parametrize("frames", [64, 128])
def test_tiny_forward_shape_and_finite(tiny, frames):
    x_t, y = spectrograms(2, frames)
    with torch.no_grad():
        score = tiny(x_t, y, torch.tensor([0.1, 0.9]))
    assert score.shape == (2, 1, 256, frames) and score.is_complex()
    assert torch.isfinite(torch.view_as_real(score)).all()


def test_bf16_autocast_returns_complex64(tiny):
    x_t, y = spectrograms(1, 32)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        score = tiny(x_t, y, torch.tensor([0.5]))
    assert score.dtype == torch.complex64 and torch.isfinite(torch.view_as_real(score)).all()


def test_time_multiple_and_input_checks(tiny):
    assert tiny.time_multiple == 8
    with torch.device("meta"):
        assert NCSNpp().time_multiple == 64
    x_t, y = spectrograms(1, 60)
    with pytest.raises(ValueError, match="multiple of 8"):
        tiny(x_t, y, torch.tensor([0.5]))
    with pytest.raises(ValueError, match="image_size=256"):
        tiny(x_t[:, :, :128, :64], y[:, :, :128, :64], torch.tensor([0.5]))


def test_default_config_matches_sgmse_layout():
    with torch.device("meta"):
        net = NCSNpp()
    assert count_parameters(net) == REFERENCE_NUM_PARAMETERS
    state = net.state_dict()
    for key in ("all_modules.0.W", "all_modules.3.weight", "all_modules.21.NIN_0.W", "output_layer.weight"):
        assert key in state
    layout = "\n".join(f"{k}:{tuple(v.shape)}" for k, v in state.items())
    assert hashlib.sha256(layout.encode()).hexdigest() == REFERENCE_LAYOUT_SHA256


def test_yaml_default_equals_constructor_defaults():
    with torch.device("meta"):
        from_yaml, default = backbone_from_config("ncsnpp", cond_dim=512), NCSNpp(cond_dim=512)
    assert [(k, v.shape) for k, v in from_yaml.state_dict().items()] == \
           [(k, v.shape) for k, v in default.state_dict().items()]


def test_output_is_divided_by_t(tiny):
    """scale_by_sigma divides the last feature map by t before output_layer (bias excluded)."""
    unscaled = NCSNpp(**{**tiny_kwargs(tiny), "scale_by_sigma": False}).eval()
    unscaled.load_state_dict(tiny.state_dict())
    for net in (tiny, unscaled):
        torch.nn.init.zeros_(net.output_layer.bias)
    x_t, y = spectrograms(2, 64)
    t = torch.tensor([0.05, 0.7])
    with torch.no_grad():
        scaled_score, raw_score = tiny(x_t, y, t), unscaled(x_t, y, t)
    torch.testing.assert_close(scaled_score * t[:, None, None, None], raw_score)


def tiny_kwargs(net: NCSNpp) -> dict:
    return dict(nf=net.nf, ch_mult=net.ch_mult, num_res_blocks=net.num_res_blocks,
                attn_resolutions=net.attn_resolutions)


def test_fresh_conditional_model_equals_unconditional(tiny):
    torch.manual_seed(1)
    conditional = NCSNpp(**tiny_kwargs(tiny), cond_dim=16).eval()
    missing = conditional.load_state_dict(tiny.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("cond_proj.") for k in missing)
    x_t, y = spectrograms(2, 64)
    t = torch.tensor([0.3, 0.6])
    with torch.no_grad():
        expected = tiny(x_t, y, t)
        for cond in (torch.zeros(2, 16), 10 * torch.randn(2, 16)):
            assert torch.equal(conditional(x_t, y, t, cond), expected)
        # once the projection is trained (non-zero) the condition changes the score
        torch.nn.init.normal_(conditional.cond_proj.net[-1].weight)
        assert not torch.allclose(conditional(x_t, y, t, torch.randn(2, 16)), expected)


def test_condition_errors(tiny):
    conditional = NCSNpp(**tiny_kwargs(tiny), cond_dim=16)
    x_t, y = spectrograms(1, 64)
    t = torch.tensor([0.5])
    with pytest.raises(ValueError, match="needs `cond`"):
        conditional(x_t, y, t)
    with pytest.raises(ValueError, match=r"\[B, 16\]"):
        conditional(x_t, y, t, torch.zeros(1, 8))
    with pytest.raises(ValueError, match="unconditional"):
        tiny(x_t, y, t, torch.zeros(1, 16))


def test_tiny_learns_a_fixed_batch():
    """Adam on SGMSE+'s score-matching loss (x_t = y + sigma z) must reduce it: the tiny net learns."""
    torch.manual_seed(0)
    net = backbone_from_config("ncsnpp_tiny")
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    _, y = spectrograms(2, 32, seed=3)
    z = torch.randn_like(y)
    sigma, t = 0.5, torch.tensor([0.4, 0.8])
    x_t = y + sigma * z

    def loss():
        return (net(x_t, y, t) * sigma + z).abs().pow(2).mean()

    first = loss().item()
    for _ in range(25):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    assert loss().item() < 0.85 * first


def test_fir_resampling_keeps_constants_and_matches_definition():
    kernel = fir_kernel_2d([1, 3, 3, 1])
    ones = torch.ones(1, 3, 16, 16)
    # away from the zero-padded borders a constant stays constant
    assert torch.allclose(fir_upsample(ones, kernel)[..., 4:-4, 4:-4], torch.ones(1, 3, 24, 24))
    assert torch.allclose(fir_downsample(ones, kernel)[..., 2:-2, 2:-2], torch.ones(1, 3, 4, 4))
    # upfirdn2d against its definition, written as loops on one channel
    x = torch.randn(1, 1, 5, 4)
    k = torch.rand(3, 2)
    out = upfirdn2d(x, k, up=2, down=1, pad=(1, 0))
    up = torch.zeros(10, 8)
    up[::2, ::2] = x[0, 0]
    padded = torch.nn.functional.pad(up, (1, 0, 1, 0))
    expected = torch.zeros(out.shape[-2:])
    for i in range(expected.shape[0]):
        for j in range(expected.shape[1]):
            for a in range(3):
                for b in range(2):  # true convolution: kernel flipped against the window
                    expected[i, j] += padded[i + a, j + b] * k[2 - a, 1 - b]
    torch.testing.assert_close(out[0, 0], expected)


def test_non_fir_and_other_progressive_options_run():
    x_t, y = spectrograms(1, 64)
    for options in ({"fir": False}, {"progressive": "none", "progressive_combine": "cat"},
                    {"progressive_input": "none"}):
        net = NCSNpp(nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(128,), **options)
        with torch.no_grad():
            assert net(x_t, y, torch.tensor([0.5])).shape == x_t.shape
    with pytest.raises(ValueError, match="biggan"):
        NCSNpp(resblock_type="ddpm")
