"""The auxiliary noise-class head (NASE multi-task, sgmse_nc.diffusion.noise_class): its loss against a
cross-entropy computed by hand, what counts as a target (unknown names, null references, dropped conditions),
and that weight 0 builds nothing and changes nothing."""
import math

import pytest
import torch

from sgmse_nc.config import build_model_from_config
from sgmse_nc.errors import OptionError, find_user_error
from sgmse_nc.diffusion.model import ScoreModel
from tests.diffusion.test_model import fake_batch

CLASSES = ["babble", "car", "street"]


def tiny_model(weight=0.5, encoder="cnn", classes=CLASSES, **kw) -> ScoreModel:
    head = None if weight is None else {"weight": weight, "hidden": 0, "classes": classes}
    return build_model_from_config(["backbone=ncsnpp_tiny", f"encoder={encoder}", "sde=ouve", "sampler=ode",
                                    "encoder.embed_dim=16"], noise_class_loss=head, init_seed=3, **kw)


def crafted_batch():
    """Five examples: two labelled, one unknown (""), one outside the vocabulary, one labelled without an
    honest reference (ref_null: the score network saw the null condition)."""
    batch = fake_batch(b=5, frames=32, ref_frames=16)
    batch["noise_class"] = ["street", "babble", "", "airport", "car"]
    batch["ref_null"] = torch.tensor([False, False, False, False, True])
    return batch


def test_the_loss_is_the_score_loss_plus_weight_times_a_hand_computed_cross_entropy():
    with_head, without = tiny_model(weight=0.5).eval(), tiny_model(weight=None).eval()
    batch = crafted_batch()
    torch.manual_seed(0)
    score = without._loss(batch)  # the same encoder and backbone (own init streams), no head
    torch.manual_seed(0)
    total = with_head._loss(batch)
    # by hand: logits = W z + b on the encoder's embedding, log-softmax, the two labelled rows only
    z = with_head.encode(batch["r"], batch["r_wav"]).embedding
    weight, bias = with_head.noise_head.net.weight, with_head.noise_head.net.bias
    rows, targets = [0, 1], [CLASSES.index("street"), CLASSES.index("babble")]
    ce = 0.0
    for row, target in zip(rows, targets):
        logits = [float((weight[k] @ z[row] + bias[k]).detach()) for k in range(len(CLASSES))]
        ce -= logits[target] - math.log(sum(math.exp(v) for v in logits))
    ce /= len(rows)
    torch.manual_seed(0)
    parts = with_head._losses(batch)
    assert parts["noise_class"].item() == pytest.approx(ce, rel=1e-5)
    assert int(parts["labelled"]) == 2
    assert total.item() == pytest.approx(score.item() + 0.5 * ce, rel=1e-6)


def test_a_batch_without_a_labelled_example_adds_exactly_zero_and_keeps_the_head_in_the_graph():
    model = tiny_model().eval()
    batch = fake_batch(b=3, frames=32, ref_frames=16)
    batch["noise_class"] = ["", "unseen-class", ""]
    parts = model._losses(batch)
    assert parts["noise_class"].item() == 0.0 and int(parts["labelled"]) == 0
    model._total(parts).backward()
    grads = [p.grad for p in model.noise_head.parameters()]
    assert all(g is not None and torch.equal(g, torch.zeros_like(g)) for g in grads)  # DDP: in the graph
    del batch["noise_class"]  # a batch that carries no names at all: every example unknown
    assert int(model._losses(batch)["labelled"]) == 0


def test_a_reference_dropped_by_classifier_free_guidance_is_not_a_target():
    batch = fake_batch(b=4, frames=32, ref_frames=16)
    batch["noise_class"] = ["car", "car", "street", "babble"]
    assert int(tiny_model(cond_drop_prob=0.0).train()._losses(batch)["labelled"]) == 4
    assert int(tiny_model(cond_drop_prob=1.0).train()._losses(batch)["labelled"]) == 0
    model = tiny_model(cond_drop_prob=0.5).train()
    kept = []
    for seed in range(4):
        model.seed_streams(seed)  # the draw _losses makes: the examples kept are exactly the targets
        keep = torch.rand(4, generator=model._stream("dropout")) >= 0.5
        model.seed_streams(seed)
        assert int(model._losses(batch)["labelled"]) == int(keep.sum())
        kept.append(int(keep.sum()))
    assert len(set(kept)) > 1  # the seeds drew different numbers of kept references


def test_weight_zero_builds_no_head_and_leaves_the_loss_and_the_weights_unchanged():
    off, plain = tiny_model(weight=0.0), tiny_model(weight=None)
    assert off.noise_head is None
    assert off.state_dict().keys() == plain.state_dict().keys()
    batch = crafted_batch()
    torch.manual_seed(0)
    a = off._loss(batch)
    torch.manual_seed(0)
    assert torch.equal(a, plain._loss(batch))
    on = tiny_model(weight=0.5)
    assert set(on.state_dict()) - set(plain.state_dict()) == {"noise_head.net.weight", "noise_head.net.bias"}
    # the head has its own init stream: the backbone and encoder of the rows stay matched
    assert all(torch.equal(v, on.state_dict()[k]) for k, v in plain.state_dict().items())


def test_token_encoders_classify_the_mean_of_their_tokens_and_a_hidden_layer_is_offered():
    model = build_model_from_config(["backbone=ncsnpp_tiny", "encoder=sequence", "sde=ouve", "sampler=ode",
                                     "backbone.xattn_resolutions=[32]", "encoder.token_dim=16"], init_seed=3,
                                    noise_class_loss={"weight": 1.0, "hidden": 8, "classes": CLASSES})
    assert [m.out_features for m in model.noise_head.net if isinstance(m, torch.nn.Linear)] == [8, 3]
    batch = fake_batch(b=2, frames=32, ref_frames=16)
    batch["noise_class"] = ["car", "babble"]
    parts = model.eval()._losses(batch)
    assert torch.isfinite(parts["noise_class"]) and int(parts["labelled"]) == 2


@pytest.mark.parametrize(("options", "message"), [
    ({"weight": -1.0}, "weight=-1.0"),
    ({"weight": 0.5, "classes": None}, "needs noise classes"),
    ({"weight": 0.5, "classes": ["a", "a"]}, "unique"),
    ({"weight": 0.5, "hidden": 1.5, "classes": ["a"]}, "hidden=1.5"),
    ({"weight": 0.5, "clases": ["a"]}, "clases: not an option"),
])
def test_bad_options_are_one_error_naming_the_key(options, message):
    with pytest.raises(Exception, match=message) as refusal:  # Hydra wraps the constructor's error
        build_model_from_config(["backbone=ncsnpp_tiny", "encoder=cnn", "sde=ouve", "sampler=ode"],
                                noise_class_loss=options)
    assert isinstance(find_user_error(refusal.value), OptionError)  # sgmse-train: one error: line, exit 2


def test_encoder_none_has_no_embedding_to_classify():
    with pytest.raises(Exception, match="encoder=none has none") as refusal:
        build_model_from_config(["backbone=ncsnpp_tiny", "encoder=none", "sde=ouve", "sampler=ode"],
                                noise_class_loss={"weight": 0.5, "classes": CLASSES})
    assert isinstance(find_user_error(refusal.value), OptionError)


class LabelledLast(torch.utils.data.Dataset):
    """Four examples: the first batch of two has no label at all, the second two."""

    def __len__(self):
        return 4

    def __getitem__(self, i):
        example = {k: v[0] for k, v in fake_batch(b=1, frames=32, ref_frames=16, seed=i).items()}
        example["noise_class"] = "" if i < 2 else "car"
        return example


def test_the_logged_epoch_metrics_are_over_the_labelled_examples_only(tmp_path):
    import pytorch_lightning as pl

    model = tiny_model()
    loader = torch.utils.data.DataLoader(LabelledLast(), batch_size=2)
    trainer = pl.Trainer(accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=2,
                         val_check_interval=2, default_root_dir=tmp_path)
    trainer.fit(model, loader, [loader])
    logged = {k: float(v) for k, v in trainer.callback_metrics.items()}
    for stage in ("train", "valid"):  # a batch without labels weighs nothing: no NaN, no dilution by zeros
        assert math.isfinite(logged[f"{stage}_noise_class_loss"]) and logged[f"{stage}_noise_class_loss"] > 0.05
        assert logged[f"{stage}_noise_class_acc"] in (0.0, 0.5, 1.0)
    # validation's value is the labelled batch's cross-entropy alone (with the EMA weights validation uses)
    labelled = next(iter(torch.utils.data.DataLoader(torch.utils.data.Subset(LabelledLast(), [2, 3]), batch_size=2)))
    with torch.no_grad(), model.ema.swapped_in(model):
        expected = float(model.eval()._losses(labelled)["noise_class"])
    assert logged["valid_noise_class_loss"] == pytest.approx(expected, rel=1e-4)
