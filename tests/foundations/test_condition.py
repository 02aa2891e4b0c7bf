"""The condition structure: null condition, dropout, concatenation for guidance, device moves."""
import subprocess
import sys

import pytest
import torch

from sgmse_nc.condition import (Condition, as_condition, cat_conditions, drop_condition, null_condition,
                                stack_conditions, zero_condition)
from sgmse_nc.diffusion.sampling import guided_score
from tests.helpers import TinyScoreNet


def both(b=6, d=4, l=3, k=5):
    g = torch.Generator().manual_seed(0)
    mask = torch.ones(b, l, dtype=torch.bool)
    mask[0, -1] = False
    return Condition(torch.randn(b, d, generator=g) + 2, torch.randn(b, l, k, generator=g) + 2, mask)


def test_condition_importable_without_lightning():
    code = "import sys, sgmse_nc.condition, sgmse_nc.diffusion.sampling; sys.exit('pytorch_lightning' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_as_condition_and_shape_checks():
    assert as_condition(None) is None
    assert as_condition(torch.zeros(2, 4)).embedding.shape == (2, 4)
    assert as_condition(torch.zeros(2, 3, 4)).tokens.shape == (2, 3, 4)
    with pytest.raises(ValueError, match="batch size"):
        Condition(torch.zeros(2, 4), torch.zeros(3, 1, 4))
    with pytest.raises(ValueError, match="mask"):
        Condition(tokens=torch.zeros(2, 3, 4), mask=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="needs"):
        Condition()


def test_null_condition_is_zeros_with_every_token_valid():
    null = null_condition(both())
    assert not null.embedding.any() and not null.tokens.any() and null.mask.all()
    assert null.tokens.shape == both().tokens.shape
    z = zero_condition(3, embed_dim=4, token_dim=5, num_tokens=2)
    assert z.embedding.shape == (3, 4) and z.tokens.shape == (3, 2, 5) and not z.tokens.any()
    assert zero_condition(3) is None


def test_dropout_nulls_global_and_tokens_of_the_same_examples():
    cond = both(b=4000)
    dropped = drop_condition(cond, 0.3, generator=torch.Generator().manual_seed(1))
    gone = (dropped.embedding == 0).all(dim=1)
    assert torch.equal(gone, (dropped.tokens == 0).flatten(1).all(dim=1))
    assert abs(gone.float().mean().item() - 0.3) < 0.03
    kept = ~gone
    assert torch.equal(dropped.embedding[kept], cond.embedding[kept])
    assert torch.equal(dropped.tokens[kept], cond.tokens[kept]) and torch.equal(dropped.mask[kept], cond.mask[kept])
    assert dropped.mask[gone].all()  # a dropped example's null tokens are all valid
    assert drop_condition(cond, 0.0) is cond and drop_condition(None, 0.5) is None


def test_cat_stack_slice_and_move():
    cond = both()
    two = cat_conditions([cond, null_condition(cond)])
    assert two.batch_size == 12 and two.tokens.shape == (12, 3, 5) and two.mask.shape == (12, 3)
    unmasked = Condition(torch.ones(1, 4), torch.ones(1, 3, 5))
    mixed = cat_conditions([cond[0], unmasked])
    assert mixed.mask[1].all() and not mixed.mask[0, -1]
    stacked = stack_conditions([cond[1], None, cond[2]])
    assert torch.equal(stacked.embedding[0], cond.embedding[1]) and not stacked.embedding[1].any()
    assert stack_conditions([None, None]) is None
    assert torch.equal(stack_conditions([torch.ones(1, 2), None]), torch.tensor([[1.0, 1], [0, 0]]))
    moved = cond.to("meta", dtype=torch.float16)
    assert moved.embedding.device.type == "meta" and moved.embedding.dtype == torch.float16
    assert moved.mask.dtype == torch.bool
    with pytest.raises(ValueError, match="different fields"):
        cat_conditions([cond, Condition(embedding=torch.ones(1, 4))])


class TokenNet(TinyScoreNet):
    """Reads both fields of a Condition, so guidance must carry both."""

    def forward(self, x, y, t, cond=None):
        scale = cond.embedding.sum(1) + (cond.tokens.sum((1, 2)) * cond.mask.all(1))
        return -(x - y) * (1 + scale.view(-1, 1, 1, 1)) / t.view(-1, 1, 1, 1)


def test_guidance_with_a_condition_structure():
    net, cond = TokenNet(), both(b=2)
    y = torch.randn(2, 1, 4, 8, dtype=torch.cfloat)
    x, t = torch.randn_like(y), torch.full((2,), 0.5)
    null = null_condition(cond)
    s_c, s_u = net(x, y, t, cond), net(x, y, t, null)
    torch.testing.assert_close(guided_score(net, y, cond, null, 3.0)(x, t), s_u + 3.0 * (s_c - s_u))
    assert torch.equal(guided_score(net, y, cond, null, 1.0)(x, t), s_c)
