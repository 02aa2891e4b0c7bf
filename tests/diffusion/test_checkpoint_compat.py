"""Checkpoints written before the house moved into stage packages still load and enhance identically.

tests/fixtures/tiny_before_move.ckpt was written by the code of commit 1cf8cd8 (flat modules): a tiny
conditional OUVE model (ncsnpp_tiny, CNN encoder) with perturbed weights, so that the condition matters.
tiny_before_move_expected.pt holds what that code's `enhance` returned for a fixed input, with and without
a reference."""
from __future__ import annotations

import torch

from sgmse_nc.diffusion.model import ScoreModel
from sgmse_nc.enhance.core import enhance
from tests.helpers import REPO_ROOT

FIXTURES = REPO_ROOT / "tests" / "fixtures"


def test_checkpoint_from_before_the_move_enhances_identically():
    hparams = torch.load(FIXTURES / "tiny_before_move.ckpt", weights_only=True)["hyper_parameters"]
    assert hparams["backbone"]["_target_"] == "sgmse_nc.nets.ncsnpp.NCSNpp"  # the stored path stays valid
    expected = torch.load(FIXTURES / "tiny_before_move_expected.pt", weights_only=True)
    model = ScoreModel.load_for_inference(FIXTURES / "tiny_before_move.ckpt")
    for name, reference in (("conditioned", expected["reference"]), ("unconditional", None)):
        out = enhance(model, [expected["noisy"]], [reference], seed=0)[0]
        peak = expected[name].abs().max()
        assert out.shape == expected[name].shape
        assert (out - expected[name]).abs().max() <= 1e-5 * peak, name
    # the two expectations differ: the test sees the encoder and the condition path
    assert (expected["conditioned"] - expected["unconditional"]).abs().max() > 1e-4 * peak
