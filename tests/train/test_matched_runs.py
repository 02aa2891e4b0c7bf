"""Matched runs: two rows of a study with the same seed (an unconditional model and a CFG model with a noise
encoder) start from the same backbone and see the same training examples in the same order, whatever
their encoder or condition dropout draws (sgmse_nc.seeds, sgmse_nc.data.sampling)."""
import torch

from sgmse_nc.config import compose_config
from sgmse_nc.data.mixing import MixingDataset
from sgmse_nc.data.prepare.demo import ensure_demo_corpus
from sgmse_nc.data.sampling import EpochShuffle
from sgmse_nc.seeds import stream_seed
from sgmse_nc.train.run import train

# the CFG row also uses the backbone's dropout, which draws from torch's global generator in training: what the
# rows draw from it differs, and nothing matched may depend on it
ROW_OVERRIDES = {"sgmse_baseline": ["encoder=none", "model.cond_drop_prob=0.0"],
                 "cfg": ["encoder=cnn", "model.cond_drop_prob=0.5", "backbone.dropout=0.1"]}


def run_row(tmp_path, data_dir, row, seed=3):
    out = tmp_path / row
    probe = tmp_path / f"{row}.pt"
    cfg = compose_config(["experiment=demo", f"paths.root_dir={tmp_path}", f"paths.data_dir={data_dir}",
                          f"paths.output_dir={out}", "threads=1", f"seed={seed}", "+data.prepare.num_train=6",
                          "+data.prepare.num_valid=2", "+data.prepare.num_test=2", "data.batch_size=2",
                          "data.num_eval_files=2", "data.train.num_frames=32", "trainer.max_steps=4",
                          # one validation, after step 4, with a sampler that draws noise (OUVE's PC from y + noise)
                          "++trainer.val_check_interval=4", "trainer.check_val_every_n_epoch=null", "sde=ouve",
                          "sampler=pc", "sampler.N=2", "++trainer.num_sanity_val_steps=0",
                          "++trainer.enable_progress_bar=false", "~callbacks.lr_monitor", "logger=[]",
                          "+callbacks.probe._target_=tests.probes.FirstBatchesProbe", f"+callbacks.probe.path={probe}",
                          *ROW_OVERRIDES[row]])
    train(cfg)
    return torch.load(probe)


def test_rows_with_the_same_seed_share_backbone_init_and_training_data(tmp_path):
    data_dir = tmp_path / "data"
    base, cfg = (run_row(tmp_path, data_dir, row) for row in ("sgmse_baseline", "cfg"))
    # the CFG row's backbone has conditioning layers on top; every shared parameter starts equal
    shared = set(base["backbone"]) & set(cfg["backbone"])
    assert shared == set(base["backbone"]) and set(cfg["backbone"]) - shared  # cond_proj is the CFG row's own
    for name in sorted(shared):
        assert torch.equal(base["backbone"][name], cfg["backbone"][name]), name
    # the same examples (clean, noisy, reference: crop, noise, order) in the same order, bit for bit
    assert len(base["batches"]) == len(cfg["batches"]) == 4
    for a, b in zip(base["batches"], cfg["batches"]):
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key
    # condition dropout draws from its own stream: the diffusion times stay matched too
    for a, b in zip(base["t"], cfg["t"]):
        assert torch.equal(a, b)
    # validation draws from its own stream too: the same diffusion times and noise for the validation loss,
    # the same sampler noise for the enhanced files, whatever training drew from torch's global generator
    assert [v["loader"] for v in base["valid"]] == [v["loader"] for v in cfg["valid"]] and {0, 1} <= {
        v["loader"] for v in base["valid"]}
    for a, b in zip(base["valid"], cfg["valid"]):
        assert torch.equal(a["t"], b["t"]) and torch.equal(a["x_t"], b["x_t"]), a["loader"]
    # a different seed gives other weights and other examples
    other = run_row(tmp_path / "other", data_dir, "sgmse_baseline", seed=4)
    assert not torch.equal(other["batches"][0]["x"], base["batches"][0]["x"])
    assert not all(torch.equal(other["backbone"][k], base["backbone"][k]) for k in shared)


def test_augmentation_does_not_move_the_speech_crop(tmp_path):
    root = tmp_path / "demo"
    ensure_demo_corpus(root, num_train=4, num_valid=2, num_test=2)
    kwargs = dict(speech_dir=root / "train" / "clean", noise_dirs=[root / "train" / "noise_ref"], train=True,
                  num_frames=32, snr_range=(0.0, 20.0))
    plain = MixingDataset(**kwargs)
    augmented = MixingDataset(**kwargs, augment={"p_white": 0.5, "p_mix": 0.5, "p_stretch": 0.5})
    order = list(EpochShuffle(len(plain), seed=7))
    assert sorted(order) == list(range(len(plain)))
    for index in order:
        a, b = plain[index], augmented[index]
        # the same speech crop, up to the example's overall gain (|x|^2 of the compressed spectrogram ~ |X|)
        power = lambda e: e["x"].abs() ** 2 / (e["x"].abs() ** 2).sum()
        torch.testing.assert_close(power(a), power(b), rtol=1e-4, atol=1e-9)
    # each position's seed depends on (seed, epoch, position) only
    assert [i.seed for i in order] == [stream_seed(7, "example", 0, p) for p in range(len(order))]
    assert [int(i) for i in EpochShuffle(len(plain), seed=7)] == [int(i) for i in order]
    second = EpochShuffle(len(plain), seed=7)
    second.set_epoch(1)
    assert [i.seed for i in second] != [i.seed for i in order]
