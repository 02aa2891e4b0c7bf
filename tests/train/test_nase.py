"""experiment=nase end to end with the tiny settings: the noise-class head trains on the manifest's labels, logs
its loss and accuracy, and its vocabulary and weights round-trip through the checkpoint (resumes keep the
checkpoint's class indices)."""
import math
from types import SimpleNamespace

import pytest
import torch

from sgmse_nc.config import compose_config
from sgmse_nc.data.prepare.demo import ensure_demo_corpus
from sgmse_nc.diffusion.model import ScoreModel
from sgmse_nc.errors import OptionError
from sgmse_nc.train.run import noise_classes, train


def nase_config(root, *overrides):
    return compose_config(["experiment=nase", "debug=tiny", f"paths.root_dir={root}", f"paths.output_dir={root}/run",
                           *overrides])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("nase")
    # the row's data (VoiceBank-DEMAND layout): a tiny demo corpus whose manifest labels noise_type white / pink
    ensure_demo_corpus(root / "data" / "vbdmd", num_train=6, num_valid=2, num_test=2, seconds=[1.0, 1.5],
                       noise_types=["white", "pink"])
    (root / "run").mkdir()  # Hydra makes the run folder; train() is called directly here
    metrics = train(nase_config(root))
    return root, metrics


def test_the_row_trains_and_logs_the_noise_class_loss_and_accuracy(trained):
    _, metrics = trained
    for stage in ("train", "valid"):
        assert math.isfinite(metrics[f"{stage}_noise_class_loss"]) and metrics[f"{stage}_noise_class_loss"] > 0
        assert 0.0 <= metrics[f"{stage}_noise_class_acc"] <= 1.0
    assert math.isfinite(metrics["valid_loss"])


def test_the_checkpoint_keeps_the_vocabulary_and_the_head(trained):
    root, _ = trained
    path = root / "run" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["hyper_parameters"]["noise_class_loss"] == {"weight": 0.3, "hidden": 0, "classes": ["pink", "white"]}
    head = {k: v for k, v in ckpt["state_dict"].items() if k.startswith("noise_head.")}
    assert head["noise_head.net.weight"].shape == (2, 512)  # 2 classes x the CNN's embedding
    assert set(head) <= set(ckpt["ema"]["shadow"])  # the head trains, so it is averaged too
    model = ScoreModel.load_for_inference(path, use_ema=False)
    assert model.noise_head.classes == ["pink", "white"]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in head.items())
    averaged = ScoreModel.load_for_inference(path)  # inference uses the EMA weights, the head's too
    assert torch.equal(averaged.noise_head.net.weight, ckpt["ema"]["shadow"]["noise_head.net.weight"])


def test_a_resumed_run_keeps_its_checkpoints_classes(trained):
    root, _ = trained
    path = str(root / "run" / "checkpoints" / "last.ckpt")
    other_data = SimpleNamespace(train_set=SimpleNamespace(noise_classes=["babble", "pink", "white"]))
    cfg = nase_config(root)
    assert noise_classes(cfg, other_data, path) == ["pink", "white"]  # not the data's: indices must not move
    assert noise_classes(cfg, other_data, None) == ["babble", "pink", "white"]  # a new run reads the data
    with pytest.raises(OptionError, match="was trained with"):
        noise_classes(nase_config(root, "model.noise_class_loss.classes=[white,pink]"), other_data, path)
    assert noise_classes(nase_config(root, "model.noise_class_loss.weight=0"), other_data, path) is None


def test_a_row_with_the_head_and_unlabelled_training_data_is_refused(tmp_path):
    unlabelled = SimpleNamespace(train_set=SimpleNamespace(noise_classes=[]))
    with pytest.raises(OptionError, match="data.train has none"):
        noise_classes(nase_config(tmp_path), unlabelled, None)
