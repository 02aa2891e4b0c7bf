"""NCSN++ backbone: shapes, SGMSE+ state-dict layout, t-scaling, conditioning, FIR resampling."""
import hashlib

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from sgmse_nc.nets import NCSNpp, count_parameters
from sgmse_nc.nets import layers, resample
from sgmse_nc.nets.layers import Combine
from sgmse_nc.nets.resample import (Resample, fir_downsample, fir_kernel_2d, fir_upsample, naive_downsample,
                                     naive_upsample, upfirdn2d)
from tests.helpers import REPO_ROOT

CONF = REPO_ROOT / "conf"
# sha256 over "key:shape" lines of the reference sgmse NCSNpp() state dict (sp-uhh/sgmse ae690e8)
REFERENCE_LAYOUT_SHA256 = "d625c0e59482a3b7ee813b453a89d40bceaefa5deec0080797de0132a89e0326"
REFERENCE_NUM_PARAMETERS = 65_590_822


def backbone_from_config(name: str, cond_dim: int = 0) -> NCSNpp:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name=f"backbone/{name}")
    return instantiate(cfg.backbone, cond_dim=cond_dim)


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


SMALL = dict(nf=8, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(64,))


def perturbed(net: NCSNpp) -> NCSNpp:
    """Every weight non-zero, as after training (zero-initialised layers would hide the paths under test)."""
    torch.manual_seed(2)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net.eval()


def test_non_fir_option_resamples_naively_everywhere():
    x = torch.randn(1, 2, 8, 6)
    torch.testing.assert_close(naive_downsample(x), F.avg_pool2d(x, 2))
    up = naive_upsample(x)
    assert up.shape == (1, 2, 16, 12) and torch.equal(up[..., 1::2, ::2], x) and torch.equal(up[..., ::2, 1::2], x)
    torch.manual_seed(0)
    naive = perturbed(NCSNpp(**SMALL, fir=False))
    resamplers = [m for m in naive.modules() if isinstance(m, Resample)]
    assert resamplers and not any(m.fir for m in resamplers)
    fir = NCSNpp(**SMALL).eval()
    fir.load_state_dict(naive.state_dict())  # same weights: only the resampling differs
    x_t, y = spectrograms(1, 32)
    t = torch.tensor([0.5])
    with torch.no_grad():
        assert not torch.allclose(naive(x_t, y, t), fir(x_t, y, t))


def _output_heads(net: NCSNpp) -> list[torch.nn.Conv2d]:
    return [m for m in net.all_modules if isinstance(m, torch.nn.Conv2d) and m.out_channels == 4]


@pytest.mark.parametrize("progressive", ["output_skip", "none"])
def test_progressive_output_sums_every_level_or_only_the_last(progressive):
    net = perturbed(NCSNpp(**SMALL, progressive=progressive))
    heads = _output_heads(net)
    assert len(heads) == (len(SMALL["ch_mult"]) if progressive == "output_skip" else 1)
    with torch.no_grad():  # silence the finest level's head (and the output bias)
        for p in (heads[-1].weight, heads[-1].bias, net.output_layer.bias):
            p.zero_()
        score = net(*spectrograms(1, 32), torch.tensor([0.5]))
    if progressive == "none":
        assert not score.abs().any()  # the last head is the only way out
    else:
        assert score.abs().mean() > 1e-4  # the coarser levels' heads reach the output through the pyramid


@pytest.mark.parametrize("progressive_input", ["input_skip", "none"])
def test_progressive_input_feeds_the_pyramid_to_every_down_level(progressive_input):
    net = perturbed(NCSNpp(**SMALL, progressive_input=progressive_input))
    calls = []
    net.pyramid_downsample.register_forward_hook(lambda module, args, out: calls.append(out.shape[-2:]))
    with torch.no_grad():
        net(*spectrograms(1, 32), torch.tensor([0.5]))
    expected = [(128, 16), (64, 8)] if progressive_input == "input_skip" else []
    assert [tuple(s) for s in calls] == expected


def test_progressive_combine_sums_or_concatenates():
    pyramid, h = torch.randn(1, 4, 8, 8), torch.randn(1, 6, 8, 8)
    for method in ("sum", "cat"):
        combine = Combine(4, 6, method=method)
        p = combine.Conv_0(pyramid)
        expected = p + h if method == "sum" else torch.cat([p, h], dim=1)
        torch.testing.assert_close(combine(pyramid, h), expected)
    x_t, y = spectrograms(1, 32)
    with torch.no_grad():
        assert perturbed(NCSNpp(**SMALL, progressive_combine="cat"))(x_t, y, torch.tensor([0.5])).shape == x_t.shape


def test_resblock_type_other_than_biggan_is_refused():
    with pytest.raises(ValueError, match="biggan"):
        NCSNpp(resblock_type="ddpm")


# --- the fast paths against straightforward computations (a wrong fold or a broken in-place op fails) ---

@pytest.mark.parametrize("taps", [[1, 3, 3, 1], [0.3, 1, 2, 0.5], [1, 2, 1], [1, 4, 6, 4, 1, 2]])
def test_fast_fir_equals_zero_stuffing_definition(taps):
    g = torch.Generator().manual_seed(0)
    # an asymmetric 2-D kernel, so a missing or extra flip shows
    kernel = fir_kernel_2d(taps) + 0.01 * torch.rand(len(taps), len(taps), generator=g)
    x = torch.randn(2, 3, 16, 8, generator=g)
    torch.testing.assert_close(fir_upsample(x, kernel), resample.fir_upsample_reference(x, kernel))
    torch.testing.assert_close(fir_downsample(x, kernel), resample.fir_downsample_reference(x, kernel))
    assert fir_upsample(x, kernel).shape == (2, 3, 32, 16) and fir_downsample(x, kernel).shape == (2, 3, 8, 4)


def test_fused_groupnorm_silu_equals_plain_values_and_gradients():
    g = torch.Generator().manual_seed(0)
    norm = layers.group_norm(16)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(16, generator=g))
        norm.bias.copy_(torch.randn(16, generator=g))
    x = torch.randn(2, 16, 8, 6, generator=g, requires_grad=True)
    grad = torch.randn(2, 16, 8, 6, generator=g)
    fused = layers.norm_act(norm, torch.nn.SiLU(), x)
    fused_grads = torch.autograd.grad(fused, (x, norm.weight, norm.bias), grad)
    plain = torch.nn.functional.silu(norm(x))
    plain_grads = torch.autograd.grad(plain, (x, norm.weight, norm.bias), grad)
    assert fused.grad_fn is not None and "GroupNormSiLU" in type(fused.grad_fn).__name__
    torch.testing.assert_close(fused, plain)
    for a, b in zip(fused_grads, plain_grads):
        torch.testing.assert_close(a, b)
    with torch.no_grad():
        torch.testing.assert_close(layers.norm_act(norm, torch.nn.SiLU(), x), plain)

    conv = layers.conv3x3(16, 5)
    torch.nn.init.normal_(conv.bias)
    fused = layers.norm_act_conv(norm, torch.nn.SiLU(), conv, x)
    assert "GroupNormSiLUConv" in type(fused.grad_fn).__name__
    grad = torch.randn(fused.shape, generator=g)
    params = (x, norm.weight, norm.bias, conv.weight, conv.bias)
    fused_grads = torch.autograd.grad(fused, params, grad)
    plain = conv(torch.nn.functional.silu(norm(x)))
    torch.testing.assert_close(fused, plain)
    for a, b in zip(fused_grads, torch.autograd.grad(plain, params, grad)):
        torch.testing.assert_close(a, b)


def test_pointwise_equals_conv2d():
    g = torch.Generator().manual_seed(0)
    conv = layers.conv1x1(6, 5)
    torch.nn.init.normal_(conv.bias)
    x = torch.randn(3, 6, 4, 7, generator=g)
    torch.testing.assert_close(conv(x), torch.nn.functional.conv2d(x, conv.weight, conv.bias))
    nin = layers.NIN(6, 5)
    torch.testing.assert_close(nin(x), torch.nn.functional.conv2d(x, nin.W.t()[:, :, None, None], nin.b))
    tokens = x.flatten(2).transpose(1, 2)
    torch.testing.assert_close(nin.tokens(tokens), nin(x).flatten(2).transpose(1, 2))


def test_pointwise_keeps_channels_last():
    conv = layers.conv1x1(6, 5)
    torch.nn.init.normal_(conv.bias)
    x = torch.randn(3, 6, 4, 7).contiguous(memory_format=torch.channels_last)
    out = conv(x)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, torch.nn.functional.conv2d(x.contiguous(), conv.weight, conv.bias))


@pytest.mark.parametrize("batch", [1, 2])
def test_channels_last_layout_survives_every_module(batch):
    """With channels_last every feature map stays NHWC (a module that falls back to NCHW costs a copy and slow
    kernels downstream); without, every one stays NCHW. Batch 1 included: its batch stride is free."""
    torch.manual_seed(0)
    net = NCSNpp(nf=8, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(64,), token_dim=3,
                 xattn_resolutions=(64,)).eval()
    from sgmse_nc.condition import Condition
    cond = Condition(tokens=torch.randn(batch, 2, 3), mask=torch.ones(batch, 2, dtype=torch.bool))
    x_t, y = spectrograms(batch, 32)
    for channels_last, layout in ((True, torch.channels_last), (False, torch.contiguous_format)):
        net.channels_last = channels_last
        wrong = []
        hooks = [m.register_forward_hook(lambda m, _, out: wrong.append(type(m).__name__) if (
            isinstance(out, torch.Tensor) and out.dim() == 4 and not out.is_complex() and out.shape[1] > 1
            and not out.is_contiguous(memory_format=layout)) else None) for m in net.all_modules.modules()]
        hooks += [m.register_forward_hook(lambda m, _, out: wrong.append("xattn") if not out.is_contiguous(
            memory_format=layout) else None) for m in net.xattn.values()]
        with torch.no_grad():
            net(x_t, y, torch.full((batch,), 0.5), cond)
        for h in hooks:
            h.remove()
        assert not wrong, f"channels_last={channels_last}: {sorted(set(wrong))} changed the layout"


def _use_straightforward_ops(monkeypatch):
    """Swap every fast path for the textbook computation it replaces."""
    monkeypatch.setattr(resample, "fir_upsample", resample.fir_upsample_reference)
    monkeypatch.setattr(resample, "fir_downsample", resample.fir_downsample_reference)
    monkeypatch.setattr(layers, "pointwise", lambda x, w, b: torch.nn.functional.conv2d(x, w[:, :, None, None], b))
    plain_norm_act = lambda norm, act, x: act(norm(x))  # noqa: E731
    monkeypatch.setattr(layers, "norm_act", plain_norm_act)
    plain_norm_act_conv = lambda norm, act, conv, x: conv(act(norm(x)))  # noqa: E731
    monkeypatch.setattr(layers, "norm_act_conv", plain_norm_act_conv)
    monkeypatch.setattr("sgmse_nc.nets.ncsnpp.norm_act_conv", plain_norm_act_conv)
    monkeypatch.setattr(layers, "residual_sum",
                        lambda x, h, rescale: (x + h) / 2 ** 0.5 if rescale else x + h)


@pytest.mark.parametrize("options", [{}, {"progressive": "none", "progressive_combine": "cat"},
                                     {"channels_last": True, "token_dim": 3, "xattn_resolutions": (64,)}])
def test_fast_network_equals_straightforward_one(monkeypatch, options):
    """Outputs and every gradient of a net with non-silent random weights, fast vs textbook ops."""
    torch.manual_seed(0)
    net = NCSNpp(nf=8, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(64,), cond_dim=4, **options)
    with torch.no_grad():  # wake the zero-initialised branches so every path contributes
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p)) if p.requires_grad else None
    x_t, y = spectrograms(2, 32)
    t, cond = torch.tensor([0.1, 0.8]), torch.randn(2, 4)
    if options.get("token_dim"):
        from sgmse_nc.condition import Condition
        cond = Condition(embedding=cond, tokens=torch.randn(2, 5, 3), mask=torch.tensor([[1, 1, 1, 0, 0]] * 2).bool())

    def run():
        net.zero_grad()
        score = net(x_t, y, t, cond)
        torch.view_as_real(score).pow(2).mean().backward()
        return score.detach(), {k: p.grad.clone() for k, p in net.named_parameters() if p.grad is not None}

    fast, fast_grads = run()
    _use_straightforward_ops(monkeypatch)
    net.channels_last = False  # and the reference's NCHW layout
    plain, plain_grads = run()
    assert (fast - plain).abs().max() <= 1e-5 * plain.abs().max()
    assert fast_grads.keys() == plain_grads.keys()
    for key, g in plain_grads.items():
        scale = max(g.abs().max().item(), 1e-3 * max(v.abs().max().item() for v in plain_grads.values()))
        assert (fast_grads[key] - g).abs().max() <= 1e-4 * scale, key
