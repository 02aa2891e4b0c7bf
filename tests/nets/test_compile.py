"""torch.compile of the score network (inductor on the CPU, as a GPU run would compile it): only the real-valued
core is compiled (no complex operator reaches inductor), and compiled == eager for the outputs and one training
step, within float32 tolerance."""
import copy
import logging
import warnings

import pytest
import torch

from sgmse_nc.config import build_model_from_config

SMALL = ["backbone=ncsnpp_tiny", "spec.n_fft=126", "spec.hop_length=32", "sde=ouve",
         "sampler=ode"]


def batch(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    c = lambda *s: 0.1 * torch.randn(*s, dtype=torch.complex64, generator=g)
    x = c(2, 1, 64, 32)
    return {"x": x, "y": x + c(2, 1, 64, 32), "r": c(2, 1, 64, 16), "r_wav": 0.1 * torch.randn(2, 4000, generator=g)}


def train_step(model, data) -> float:
    # SGD: Adam's first step is lr * sign(grad), which turns a 1e-12 rounding difference of a near-zero gradient
    # into a full step; SGD moves each weight by lr x its gradient, so equal gradients give equal weights.
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    torch.manual_seed(1)  # the same diffusion times and noise for both models
    loss = model._loss(data)
    loss.backward()
    optimizer.step()
    return float(loss)


@pytest.mark.slow  # inductor compiles C++ kernels for the forward and the backward (minutes on 2 free cores;
@pytest.mark.timeout(5400)  # over 30 on 2 cores shared by 8 jobs)
@pytest.mark.parametrize("encoder", [["encoder=cnn", "encoder.embed_dim=16"],
                                     ["encoder=sequence", "encoder.token_dim=16", "backbone.xattn_resolutions=[8]"]],
                         ids=["cnn", "sequence_xattn"])
def test_compiled_score_network_matches_eager(encoder, caplog):
    torch.manual_seed(0)
    eager = build_model_from_config([*SMALL, *encoder]).train()
    compiled = copy.deepcopy(eager)
    compiled.dnn.compile_real_score()
    data = batch()
    t = torch.full((2,), 0.5)
    cond = eager.encode_batch(data)
    # inductor says "does not support code generation for complex operators" as a Python warning (and some
    # versions as a log record): catch both
    with caplog.at_level(logging.WARNING), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with torch.no_grad():
            torch.testing.assert_close(compiled(data["y"], data["y"], t, cond), eager(data["y"], data["y"], t, cond),
                                       rtol=1e-4, atol=1e-5)
        losses = train_step(compiled, data), train_step(eager, data)
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
    for (name, a), b in zip(compiled.named_parameters(), eager.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    complex_warnings = [m for m in messages + [str(w.message) for w in caught] if "complex" in m.lower()]
    assert not complex_warnings, complex_warnings  # the STFT/complex math stayed outside the compiled region
