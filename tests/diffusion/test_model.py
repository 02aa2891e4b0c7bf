import pytest
import pytorch_lightning as pl
import torch

from sgmse_nc.condition import as_condition, null_condition
from sgmse_nc.config import build_model_from_config
from sgmse_nc.diffusion.checkpoints import CheckpointError
from sgmse_nc.diffusion.model import ScoreModel


def tiny_model(encoder="cnn", **kw) -> ScoreModel:
    return build_model_from_config(["backbone=ncsnpp_tiny", f"encoder={encoder}", "sde=ouve", "sampler=ode"], **kw)


def fake_batch(b=2, frames=64, ref_frames=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = lambda *s: torch.randn(*s, dtype=torch.complex64, generator=g) * 0.1
    x = c(b, 1, 256, frames)
    return {"x": x, "y": x + c(b, 1, 256, frames), "r": c(b, 1, 256, ref_frames),
            "r_wav": torch.randn(b, 128 * (ref_frames - 1), generator=g) * 0.1, "norm": torch.ones(b)}


def test_loss_is_finite_and_decreases_on_a_fixed_batch():
    torch.manual_seed(0)
    model = tiny_model(cond_drop_prob=0.0)
    batch = fake_batch(frames=32)
    batch["x"] = 0.5 * batch["y"]  # a learnable clean/noisy relation, so 20 steps show progress
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(20):
        torch.manual_seed(123)  # the same t and z every step: only the weights change
        loss = model._loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) < 0.95 * sum(losses[:5])


def test_every_parameter_gets_a_gradient_even_when_all_conditions_are_dropped():
    # DDP needs every parameter in every step: dropout masks z, it never skips the encoder.
    model = tiny_model(cond_drop_prob=1.0)
    model._loss(fake_batch()).backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused


def trained_conditioning(model: ScoreModel) -> ScoreModel:
    """A fresh model's conditioning projection and output layers are zero (the condition has no effect on
    the score): perturb every weight, as training would."""
    torch.manual_seed(5)
    with torch.no_grad():
        for p in model.dnn.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def test_enhance_spec_any_length_with_and_without_guidance():
    model = trained_conditioning(tiny_model()).eval()
    batch = fake_batch(b=2, frames=21)
    assert not torch.equal(batch["x"], batch["y"])
    cond = model.encode(batch["r"], batch["r_wav"])
    seed = lambda: torch.Generator().manual_seed(0)  # the same prior sample for every run
    runs = {w: model.enhance_spec(batch["y"], cond, guidance_scale=w, name="ode", N=3, generator=seed())
            for w in (0.0, 1.0, 3.0)}
    for x in runs.values():
        assert x.shape == batch["y"].shape and torch.isfinite(torch.view_as_real(x)).all()
    assert not torch.allclose(runs[1.0], runs[3.0])  # the scale reaches the sampler
    # w = 0 is the unconditional score: the same as sampling with the null condition at w = 1
    unconditional = model.enhance_spec(batch["y"], None, name="ode", N=3, generator=seed())
    torch.testing.assert_close(runs[0.0], unconditional, rtol=1e-4, atol=1e-5)
    x = model.enhance_spec(batch["y"], None, N=2)  # conditional model, no reference: null condition
    assert x.shape == batch["y"].shape


def test_guided_score_of_the_model_is_s_u_plus_w_times_the_difference(monkeypatch):
    model = trained_conditioning(tiny_model()).eval()
    batch = fake_batch(b=2, frames=16)
    cond = model.encode(batch["r"], batch["r_wav"])
    scores = {}

    def capture(score, prediction, sde, y, **kw):  # the score callable enhance_spec hands its sampler
        scores["fn"] = score
        return y, 0

    monkeypatch.setattr("sgmse_nc.diffusion.model.sample", capture)
    x, t = batch["x"], torch.full((2,), 0.4)
    with torch.no_grad():
        s_c, s_u = model(x, batch["y"], t, cond), model(x, batch["y"], t, null_condition(as_condition(cond)))
        assert (s_c - s_u).abs().mean() > 1e-3 * s_c.abs().mean()  # the condition matters
        for w in (1.0, 2.5):
            model.enhance_spec(batch["y"], cond, guidance_scale=w)
            torch.testing.assert_close(scores["fn"](x, t), s_u + w * (s_c - s_u), rtol=1e-4, atol=1e-5)


def test_training_drops_the_condition_with_its_probability(monkeypatch):
    """With cond_drop_prob = 1 every training example reaches the network with the null condition;
    in eval mode (validation loss) and with probability 0 the encoded condition reaches it."""
    seen = []
    for prob, training in ((1.0, True), (1.0, False), (0.0, True)):
        model = tiny_model(cond_drop_prob=prob).train(training)
        forward = model.dnn.forward
        monkeypatch.setattr(model.dnn, "forward", lambda x, y, t, cond=None: seen.append(cond) or forward(x, y, t, cond))
        model._loss(fake_batch(b=4))
        embedding = as_condition(seen[-1]).embedding
        assert (not embedding.any()) == (prob == 1.0 and training), (prob, training)


def test_checkpoint_keeps_raw_weights_and_ema_for_inference(tmp_path):
    model = tiny_model(encoder="none")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    model.ema.update(model)
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, max_steps=0)
    trainer.strategy.connect(model)
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    raw = ScoreModel.load_for_inference(path, use_ema=False)
    ema = ScoreModel.load_for_inference(path, use_ema=True)
    name = ema.ema.names[0]
    assert torch.equal(dict(raw.named_parameters())[name], dict(model.named_parameters())[name])
    assert torch.equal(dict(ema.named_parameters())[name], ema.ema.shadow[0])
    assert not torch.equal(dict(ema.named_parameters())[name], dict(raw.named_parameters())[name])


def test_missing_checkpoint_message_names_the_file(tmp_path):
    """A UserError (one `error:` line from every command) that is still a FileNotFoundError for API callers."""
    from sgmse_nc.errors import UserError

    with pytest.raises(FileNotFoundError, match="nope.ckpt") as err:
        ScoreModel.load_for_inference(tmp_path / "nope.ckpt")
    assert isinstance(err.value, UserError)


def test_load_for_inference_relabels_only_files_that_are_not_ours(tmp_path):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(bytes(range(256)) * 8)
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "global_step": 3}, other)
    for path in (junk, other):
        with pytest.raises(ValueError, match=f"{path.name}: not a (readable )?sgmse_nc checkpoint"):
            ScoreModel.load_for_inference(path)
    # weights that do not fit the hyper-parameters are named as such
    model = tiny_model(encoder="none")
    state = model.state_dict()
    key = next(k for k in state if k.endswith("weight"))
    state[key] = torch.zeros(1)
    broken = tmp_path / "broken.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": dict(model.hparams), "global_step": 1,
                "pytorch-lightning_version": pl.__version__}, broken)
    with pytest.raises(CheckpointError, match="not a sgmse_nc checkpoint .its weights do not fit.*size mismatch"):
        ScoreModel.load_for_inference(broken)  # a UserError and a ValueError
