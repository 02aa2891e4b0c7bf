"""The encoder study rows (CLAP, PANNs, token encoder + cross-attention, combined): what each one sets, and the
message a missing weight file gives. (test_experiment_matrix builds every row at both scales on meta.)"""
import pytest
import torch
from omegaconf import OmegaConf

from sgmse_nc.config import compose_config
from sgmse_nc.train.run import build_model

ROWS = {  # name: (encoder, freeze, tokens, cond_drop_prob, xattn_resolutions, data, augmentation)
    "clap_frozen": ("clap", True, False, 0.0, [], "PairedFolderDataset", False),
    "clap_finetune": ("clap", False, False, 0.0, [], "PairedFolderDataset", False),
    "clap_lora": ("clap", True, False, 0.0, [], "PairedFolderDataset", False),
    "clap_cfg_p0.1": ("clap", True, False, 0.1, [], "PairedFolderDataset", False),
    "clap_cfg_p0.2": ("clap", True, False, 0.2, [], "PairedFolderDataset", False),
    "panns_frozen": ("panns", True, False, 0.0, [], "PairedFolderDataset", False),
    "xattn": ("sequence", None, None, 0.0, [16], "PairedFolderDataset", False),
    "xattn_cfg": ("sequence", None, None, 0.1, [16], "PairedFolderDataset", False),
    "comb_01": ("clap", True, False, 0.1, [], "MixingDataset", False),
    "comb_02": ("clap", True, True, 0.1, [16], "MixingDataset", False),
    "comb_03": ("clap", True, True, 0.1, [16], "MixingDataset", True),
}


def compose(name, *overrides):
    return compose_config([f"experiment={name}", "paths.root_dir=/tmp/x", "paths.output_dir=/tmp/x/r", *overrides])


@pytest.mark.parametrize("name", sorted(ROWS))
def test_row_sets_what_it_studies(name):
    cfg = compose(name)
    encoder, freeze, tokens, p, xattn, data, augment = ROWS[name]
    assert cfg.experiment_name == name and cfg.encoder.name == encoder
    assert cfg.encoder.get("freeze") == freeze and cfg.encoder.get("tokens") == tokens
    assert cfg.model.cond_drop_prob == p and list(cfg.backbone.xattn_resolutions) == xattn
    assert cfg.data.train._target_.endswith(data) and (cfg.data.train.get("augment") is not None) == augment
    assert (cfg.backbone.nf, cfg.trainer.max_steps) == (128, 50_000)  # paper backbone, the scale's steps
    assert OmegaConf.select(cfg, "encoder.lora.rank", default=0) == (8 if name == "clap_lora" else 0)


def test_missing_weight_file_names_the_path_and_the_fix():
    # Hydra wraps the WeightsError of ScoreModel's constructor; its message comes through whole.
    with pytest.raises(Exception, match=r"/tmp/x/weights/630k-audioset-best.pt: LAION-CLAP weights not found.*"
                                           r"encoder\.weights="):
        with torch.device("meta"):
            build_model(compose("clap_frozen"))
