"""The SDE / loss / sampler choice of a model: sde=sb trains the data predictor and survives a checkpoint."""
import pytest
import pytorch_lightning as pl
import torch

from sgmse_nc.config import build_model_from_config
from sgmse_nc.diffusion.model import ScoreModel


def _batch(b=2, frames=32):
    g = torch.Generator().manual_seed(0)
    c = lambda *s: torch.randn(*s, dtype=torch.complex64, generator=g) * 0.1
    x = c(b, 1, 256, frames)
    return {"x": x, "y": x + c(b, 1, 256, frames), "r": c(b, 1, 256, 16),
            "r_wav": torch.randn(b, 128 * 15, generator=g) * 0.1, "norm": torch.ones(b)}


def test_sb_model_predicts_data_trains_and_reloads_with_its_sampler(tmp_path):
    model = build_model_from_config(["backbone=ncsnpp_tiny", "encoder=cnn", "sde=sb", "sampler=sb"])
    assert (model.sde.name, model.prediction, model.dnn.scale_by_sigma) == ("sb", "data", False)
    batch = _batch()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(10):
        torch.manual_seed(1)
        loss = model._loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, max_epochs=0)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "sb.ckpt")
    loaded = ScoreModel.load_for_inference(tmp_path / "sb.ckpt")
    assert (loaded.sde.name, loaded.prediction, loaded.sampler_cfg["name"]) == ("sb", "data", "dpm")
    seen = []
    out = loaded.enhance_spec(batch["y"], callback=lambda info: seen.append(float(info["t"])))
    assert out.shape == batch["y"].shape and torch.isfinite(torch.view_as_real(out)).all()
    assert len(seen) == 5 and seen[0] == 1.0                              # conf/sampler/sb.yaml: N = 5 from y
    with pytest.raises(ValueError, match="not defined for sde=sb"):
        loaded.enhance_spec(batch["y"], name="pc")


def test_a_sampler_that_does_not_fit_the_sde_is_refused_when_the_model_is_built():
    with pytest.raises(Exception, match="sampler 'pc' is not defined for sde=sb"):
        build_model_from_config(["backbone=ncsnpp_tiny", "encoder=none", "sde=sb", "sampler=pc"])


def test_switching_sampler_at_inference_drops_the_checkpoint_options():
    model = build_model_from_config(["backbone=ncsnpp_tiny", "encoder=none", "sde=ouve", "sampler=pc"]).eval()
    y = _batch()["y"]
    calls = []
    model.dnn.register_forward_hook(lambda *a: calls.append(1))
    model.enhance_spec(y, name="heun", N=3, snr=None, corrector_steps=None)   # no pc snr leaks into heun
    assert len(calls) == 5
