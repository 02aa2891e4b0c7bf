"""Dynamic mixing: achieved SNR, honest references, level handling, worker randomness, bad input."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from sgmse_nc.audio import AudioError, rms, write_audio
from sgmse_nc.data.errors import DataConfigError, HonestyError
from sgmse_nc.data.levels import mix_at_snr
from sgmse_nc.data.mixing import MixingDataset
from sgmse_nc.data.activity import active_mask, active_span
from sgmse_nc.data.noise_pool import AudioPool
from sgmse_nc.data.noise_source import PoolSource, disjoint_starts
from sgmse_nc.data.synthetic import speech_like
from sgmse_nc.spec import Spectrogram
from tests.helpers import REPO_ROOT, fenced_blocks

SR = 16000
REPO = REPO_ROOT
FRAMES = 64  # crops of 63 * 128 = 8064 samples


def make_corpus(root):
    """Speech: 3 utterances of 2 s in sub-folders. Noise: two 6 s recordings of unique white noise at
    48 kHz stereo (resampled and downmixed on read), classes from sub-folders."""
    rng = np.random.default_rng(0)
    for k in range(3):
        write_audio(root / "speech" / f"spk{k}" / "utt.wav", speech_like(2 * SR, rng), SR)
    for label in ("cafe", "street"):
        (root / "noise" / label).mkdir(parents=True)
        sf.write(root / "noise" / label / "rec.wav", 0.05 * rng.standard_normal((6 * 48000, 2)), 48000)
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))  # read-only for the tests


def waves(example, spec=Spectrogram()):  # noqa: B008 (a frozen dataclass)
    clean = spec.to_wav(example["x"][0])
    noisy = spec.to_wav(example["y"][0])
    return clean, noisy, noisy - clean, example["r_wav"]


def max_correlation(reference: torch.Tensor, noise: torch.Tensor) -> float:
    """Largest normalised cross-correlation of the reference against every position of the noise."""
    windows = noise.unfold(0, reference.numel(), 1)  # [positions, len]
    dots = windows @ reference
    return float((dots / (windows.norm(dim=1) * reference.norm() + 1e-12)).abs().max())


@pytest.mark.parametrize("snr", [-5.0, 5.0, 15.0])
def test_achieved_snr_matches_target(corpus, snr):
    data = MixingDataset(corpus / "speech", [corpus / "noise"], snr_range=(snr, snr), num_frames=FRAMES, length=6)
    for i in range(len(data)):
        clean, noisy, noise, _ = waves(data[i])
        achieved = 10 * torch.log10(clean.pow(2).sum() / noise.pow(2).sum())
        assert abs(achieved.item() - snr) < 0.5
        assert noisy.abs().max() <= 1.0 + 1e-5  # peak-normalised by make_example


def test_reference_is_another_stretch_of_the_same_recording(corpus):
    data = MixingDataset(corpus / "speech", [{"root": str(corpus / "noise"), "labels": "subfolder"}],
                         snr_range=(0, 10), num_frames=FRAMES, length=6, train=True)
    for i in range(len(data)):
        _, _, noise, reference = waves(data[i])
        assert reference.shape == (4000,)
        # the noise is white, so any shared stretch would correlate ~1; disjoint stretches ~0
        assert max_correlation(reference, noise[200:-200]) < 0.2


def test_pool_source_reference_offsets_never_overlap_the_noise(corpus):
    pool = AudioPool(corpus / "noise", labels="subfolder")
    source = PoolSource(pool)
    for seed in range(20):
        pair = source.draw(8064, 4000, np.random.default_rng(seed))
        start, ref_start = int(pair.noise_offset), int(pair.reference_offset)
        assert pair.noise_file == pair.reference_file and not pair.overlapping
        assert ref_start + 4000 <= start or start + 8064 <= ref_start
        assert torch.allclose(pair.noise, pool.read(pool.files.index(next(
            f for f in pool.files if f.name == pair.noise_file)), start, 8064))


def test_same_class_reference_comes_from_another_clip(tmp_path):
    rng = np.random.default_rng(1)
    for label in ("dog", "rain"):
        for k in range(3):
            write_audio(tmp_path / label / f"clip{k}.wav", (k + 1) * 0.05 * rng.standard_normal(SR), SR)
    source = PoolSource(AudioPool(tmp_path, labels="subfolder"), reference="same_class")
    for seed in range(10):
        pair = source.draw(8000, 4000, np.random.default_rng(seed))
        assert pair.reference_file != pair.noise_file
        assert pair.reference_file.split("/")[0] == pair.noise_file.split("/")[0] == pair.category
        # clips of a class have arbitrary levels: the reference is brought to the noise's level
        assert rms(pair.reference).item() == pytest.approx(rms(pair.noise).item(), rel=0.05)


def test_disjoint_starts_and_short_recording_fallbacks():
    rng = np.random.default_rng(0)
    for _ in range(200):
        start, ref = disjoint_starts(10000, 6000, 3000, rng)
        assert 0 <= start and start + 6000 <= 10000 and 0 <= ref and ref + 3000 <= 10000
        assert ref + 3000 <= start or start + 6000 <= ref
    assert disjoint_starts(8000, 6000, 3000, rng) is None
    # rest of the recording looped: still outside the noise
    start, ref_start, region, overlapping = PoolSource._same_recording(0, 8000, 6000, 3000, rng)
    assert not overlapping and (region[0] >= start + 6000 or region[1] <= start)
    # the noise covers the whole recording: overlap is flagged, at another offset
    start, ref_start, region, overlapping = PoolSource._same_recording(0, 6000, 6000, 3000, rng)
    assert overlapping and ref_start != start


def test_valid_is_deterministic_and_train_differs_per_call(corpus):
    kwargs = dict(speech_dir=corpus / "speech", noise_dirs=[corpus / "noise"], num_frames=FRAMES, length=4)
    valid_a, valid_b = MixingDataset(**kwargs), MixingDataset(**kwargs)
    assert torch.equal(valid_a[2]["y"], valid_b[2]["y"]) and torch.equal(valid_a[2]["r"], valid_b[2]["r"])
    assert not torch.equal(valid_a[1]["y"], valid_a[0]["y"])
    assert not torch.equal(MixingDataset(**kwargs, seed=1)[2]["y"], valid_a[2]["y"])
    train = MixingDataset(**kwargs, train=True)
    assert not torch.equal(train[0]["y"], train[0]["y"])


def test_whole_utterances_when_num_frames_is_none(corpus):
    data = MixingDataset(corpus / "speech", [corpus / "noise"], num_frames=None, length=3)
    clean, noisy, _, _ = waves(data[0])
    assert data[0]["x"].shape[-1] == 2 * SR // 128 + 1 and clean.shape == noisy.shape == (2 * SR // 128 * 128,)


def test_level_handling_scales_the_pair_down_together():
    rng = np.random.default_rng(0)
    clean = torch.from_numpy(0.9 * np.sin(np.arange(SR) * 0.03)).float()
    noise = torch.from_numpy(rng.standard_normal(SR)).float()
    reference = torch.from_numpy(rng.standard_normal(4000)).float()
    mix = mix_at_snr(clean, noise, reference, -5.0)
    assert mix.scale < 1 and mix.noisy.abs().max() <= 0.99 + 1e-6 and mix.reference.abs().max() <= 0.99 + 1e-6
    assert torch.allclose(mix.noisy, mix.clean + mix.noise)
    assert mix.achieved_snr == pytest.approx(-5.0, abs=1e-3)
    assert torch.allclose(mix.clean, clean * mix.scale)


def test_snr_is_measured_over_active_noise_only():
    """A mostly silent noise (ESC-50-like): the SNR counts only its active frames."""
    clean = torch.from_numpy(0.1 * np.sin(np.arange(SR) * 0.05)).float()
    noise = torch.zeros(SR)
    noise[3840:8000] = torch.from_numpy(np.random.default_rng(0).standard_normal(4160)).float()  # 20 ms frames 12-24
    mask = active_mask(noise)
    assert mask[3840:8000].all() and not mask[:3840].any() and not mask[8000:].any()
    assert active_span(noise) == (3840, 8000)
    mix = mix_at_snr(clean, noise, noise[:100], 5.0)
    active_snr = 10 * torch.log10(mix.clean.pow(2).mean() / mix.noise[3840:8000].pow(2).mean())
    whole_snr = 10 * torch.log10(mix.clean.pow(2).mean() / mix.noise.pow(2).mean())
    assert active_snr.item() == pytest.approx(5.0, abs=0.01) and mix.achieved_snr == pytest.approx(5.0, abs=0.01)
    assert whole_snr.item() > 9  # over the whole clip the silence would have counted as quiet noise


def _crops(loader):
    return [batch["y"].clone() for batch in loader]


def test_two_workers_draw_different_crops_and_the_seed_repeats_the_epoch(tmp_path):
    rng = np.random.default_rng(0)
    write_audio(tmp_path / "speech" / "long.wav", speech_like(4 * SR, rng), SR)  # one file: only crops differ
    write_audio(tmp_path / "noise" / "rec.wav", 0.05 * rng.standard_normal(6 * SR), SR)
    data = MixingDataset(tmp_path / "speech", [tmp_path / "noise"], num_frames=32, length=4, train=True)
    loader = DataLoader(data, batch_size=1, num_workers=2, shuffle=False)
    torch.manual_seed(0)
    first = _crops(loader)
    second_epoch = _crops(loader)
    torch.manual_seed(0)
    again = _crops(loader)
    assert not torch.equal(first[0], first[1])  # items 0 and 1 come from different workers
    assert not torch.equal(first[0], first[2])  # and one worker draws anew for each item
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not any(torch.equal(a, b) for a, b in zip(first, second_epoch))


# ----------------------------------------------------------------------------------------- bad input

def test_missing_and_empty_folders_name_the_folder(tmp_path, corpus):
    with pytest.raises(AudioError, match="nowhere.*not found"):
        MixingDataset(tmp_path / "nowhere", [corpus / "noise"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(AudioError, match="empty.*no usable audio"):
        MixingDataset(corpus / "speech", [tmp_path / "empty"])
    with pytest.raises(AudioError, match="noise_dirs is empty"):
        MixingDataset(corpus / "speech", [])


def test_corrupt_empty_and_short_files_are_skipped_and_counted_once(tmp_path, caplog):
    corpus = make_corpus(tmp_path)
    (corpus / "noise" / "cafe" / "corrupt.wav").write_bytes(b"RIFF not really a wav")
    sf.write(corpus / "noise" / "cafe" / "empty.wav", np.zeros(0), SR)  # a valid header, no samples
    write_audio(corpus / "speech" / "short.wav", speech_like(SR // 5, np.random.default_rng(3)), SR)
    with caplog.at_level(logging.WARNING, logger="sgmse_nc.data.noise_pool"):
        data = MixingDataset(corpus / "speech", [corpus / "noise"], num_frames=FRAMES, min_speech_seconds=0.5)
    messages = [r.getMessage() for r in caplog.records]
    noise_msgs = [m for m in messages if "pool noise" in m]
    speech_msgs = [m for m in messages if "pool speech" in m]
    assert len(noise_msgs) == 1 and "skipped 2 of 4" in noise_msgs[0] and "corrupt.wav" in noise_msgs[0]
    assert len(speech_msgs) == 1 and "short.wav" in speech_msgs[0] and "shorter than 0.5 s" in speech_msgs[0]
    assert data.noise.pools[0].skipped == {"unreadable": 1, "empty": 1}
    assert len(data.speech) == 3 and data[0]["y"].shape == (1, 256, FRAMES)


def test_short_noise_is_looped(tmp_path, corpus):
    t = np.arange(SR // 4) / SR
    write_audio(tmp_path / "short" / "beep.wav", 0.3 * np.sin(2 * np.pi * 440 * t), SR)
    data = MixingDataset(corpus / "speech", [tmp_path / "short"], snr_range=(0, 0), num_frames=FRAMES,
                         on_failure="null")
    example = data[0]
    clean, _, noise, _ = waves(example)
    assert noise[1000:-1000].abs().max() > 0.1 * noise.abs().max()  # noise everywhere, no silent tail
    assert 10 * torch.log10(clean.pow(2).sum() / noise.pow(2).sum()).item() == pytest.approx(0.0, abs=0.5)
    # a looped noise has no reference outside the mixed samples: the null condition, and the batch says why
    assert example["ref_null"] and example["ref_rejected_overlap"] == 4 and torch.all(example["r_wav"] == 0)
    with pytest.raises(HonestyError, match="4 candidate\\(s\\) overlapped the mixed noise"):
        MixingDataset(corpus / "speech", [tmp_path / "short"], num_frames=FRAMES)[0]


def test_silent_speech_is_an_error_naming_the_file(tmp_path, corpus):
    write_audio(tmp_path / "speech" / "silent.wav", np.zeros(SR), SR)
    data = MixingDataset(tmp_path / "speech", [corpus / "noise"], num_frames=FRAMES)
    with pytest.raises(AudioError, match="silent.wav.*silent"):
        data[0]


def test_config_errors_are_clear(corpus):
    with pytest.raises(AudioError, match="same_class.*labels"):
        MixingDataset(corpus / "speech", [corpus / "noise"], reference="same_class")
    with pytest.raises(ValueError, match="reference must be one of"):
        MixingDataset(corpus / "speech", [corpus / "noise"], reference="nearby")
    with pytest.raises(ValueError, match="snr_range"):
        MixingDataset(corpus / "speech", [corpus / "noise"], snr_range=(10, 0))
    with pytest.raises(AudioError, match="label csv not found"):
        MixingDataset(corpus / "speech", [{"root": str(corpus / "noise"), "labels": "missing.csv"}])


def test_noise_pool_weights_pick_pools(tmp_path, corpus):
    write_audio(tmp_path / "other" / "hum.wav", 0.1 * np.sin(np.arange(3 * SR) * 0.1), SR)
    pools = [{"root": str(corpus / "noise"), "weight": 0.0}, {"root": str(tmp_path / "other"), "weight": 1.0}]
    data = MixingDataset(corpus / "speech", pools, num_frames=FRAMES)
    rng = np.random.default_rng(0)
    assert {data.noise.draw(100, 100, rng).noise_file for _ in range(10)} == {"hum.wav"}
    with pytest.raises(ValueError, match="weights"):
        PoolSource(data.noise.pools, weights=[1.0])


def test_shipped_mixing_config_builds_the_datamodule(tmp_path):
    """conf/data/mixing.yaml's dataset nodes instantiate (as the training entry point resolves them) on a
    stand-in of its folders. The datamodule itself is not built here: importing Lightning alone takes ~8 s."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    for subset in ("train", "valid"):
        for k in range(3):
            write_audio(data / "vbdmd" / subset / "clean" / f"p{k}_{subset}.wav", speech_like(2 * SR, rng), SR)
    for kind in ("clean", "noisy"):
        write_audio(data / "vbdmd" / "test" / kind / "p232_001.wav", 0.1 * rng.standard_normal(2 * SR), SR)
    write_audio(data / "vbdmd" / "test" / "noise_ref" / "p232_001.wav", 0.1 * rng.standard_normal(SR), SR)
    for env in ("DKITCHEN", "STRAFFIC"):
        write_audio(data / "noise" / "DEMAND" / env / "ch01.wav", 0.05 * rng.standard_normal(4 * SR), SR)
    write_audio(data / "noise" / "wham_noise" / "tr" / "n0.wav", 0.05 * rng.standard_normal(4 * SR), SR)
    cfg = OmegaConf.create({"paths": {"data_dir": str(data)}, "seed": 0,
                            "spec": {"_target_": "sgmse_nc.spec.Spectrogram"},
                            "data": OmegaConf.load(REPO / "conf" / "data" / "mixing.yaml")})
    nodes = OmegaConf.to_container(cfg.data, resolve=True)
    assert set(nodes) == {"_target_", "batch_size", "num_workers", "seed", "num_eval_files", "train", "valid", "test"}
    assert nodes["batch_size"] == 8 and nodes["num_workers"] == 4
    train, valid, test = (instantiate(nodes[name]) for name in ("train", "valid", "test"))
    assert len(train) == 10000 and len(valid) == 500 and train.augment.p_mix == 0.2
    assert len(train.noise.pools) == 2 and valid.augment is None and not valid.train
    example = train[0]
    assert example["y"].shape == (1, 256, 256) and example["r_wav"].shape == (4000,)
    assert torch.equal(valid[3]["y"], instantiate(nodes["valid"])[3]["y"])  # a fresh dataset: same example
    assert test[0]["id"] == "p232_001"


# ------------------------------------------------------------------------------------ pool filters

def labelled_pool(root):
    """An ESC-50-like pool: audio/ of clips in three classes over two folds, a label csv (one clip missing)."""
    rng = np.random.default_rng(1)
    rows = ["filename,fold,category"]
    for k, (category, fold) in enumerate([("dog", 1), ("dog", 2), ("rain", 1), ("rain", 2), ("siren", 1)]):
        write_audio(root / "audio" / f"{k}.wav", 0.05 * rng.standard_normal(SR), SR)
        rows.append(f"{k}.wav,{fold},{category}")
    write_audio(root / "audio" / "unlisted.wav", 0.05 * rng.standard_normal(SR), SR)
    (root / "meta.csv").write_text("\n".join(rows) + "\n")
    return root


def test_pool_class_and_fold_filters_and_unlisted_files(tmp_path):
    root = labelled_pool(tmp_path)
    labels = str(root / "meta.csv")
    with pytest.raises(AudioError, match=r"1 file\(s\) are not in the csv .*unlisted.wav.*unlabelled: skip"):
        AudioPool(root / "audio", labels=labels)
    pool = AudioPool(root / "audio", labels=labels, unlabelled="skip")
    assert sorted(pool.by_label) == ["dog", "rain", "siren"] and pool.skipped == {"without a class (unlabelled: skip)": 1}
    only = AudioPool(root / "audio", labels=labels, unlabelled="skip", classes=["dog", "rain"], exclude_folds=[2])
    assert {(f.label, f.name) for f in only.files} == {("dog", "0.wav"), ("rain", "2.wav")}
    unseen = AudioPool(root / "audio", labels=labels, unlabelled="skip", exclude_classes=["dog", "rain"])
    assert sorted(unseen.by_label) == ["siren"]
    assert [f.name for f in AudioPool(root / "audio", labels=labels, unlabelled="skip", folds=[2]).files] == ["1.wav", "3.wav"]
    with pytest.raises(AudioError, match="no file of classes cat; the pool has dog, rain, siren"):
        AudioPool(root / "audio", labels=labels, unlabelled="skip", classes=["cat"])
    with pytest.raises(AudioError, match="filters need labels"):
        AudioPool(root / "audio", classes=["dog"])
    # the same filters from a data config's pool entry
    data = MixingDataset(tmp_path / "audio", [{"root": root / "audio", "labels": labels, "unlabelled": "skip",
                                                "exclude_classes": ["siren"]}], num_frames=16)
    assert sorted(data.noise.pools[0].by_label) == ["dog", "rain"]


def test_readme_dynamic_mixing_example_names_every_key_it_needs(tmp_path):
    """The README's dynamic-mixing command on a fake layout of its /corpora paths builds the data; without
    data.valid.speech_dir the error names that config key."""
    import shlex

    from sgmse_nc.config import compose_config
    from sgmse_nc.errors import UserError
    from sgmse_nc.train.run import build_data

    # the README's data recipes live in docs/data.md
    block = next(b.text for b in fenced_blocks(REPO / "docs" / "data.md", "bash")
                 if "sgmse-train experiment=mixing_cnn_cfg" in b.text)
    words = shlex.split(block.replace("\\\n", " "))
    args = words[words.index("experiment=mixing_cnn_cfg"):]
    rng = np.random.default_rng(2)
    corpora = tmp_path / "corpora"
    for split in ("train", "valid"):
        write_audio(corpora / "speech" / split / "a.wav", speech_like(2 * SR, rng), SR)
    for folder in ("DEMAND/kitchen", "DEMAND/street", "wham_noise/tr"):
        write_audio(corpora / folder / "n.wav", 0.05 * rng.standard_normal(4 * SR), SR)
    args = [a.replace("/corpora", str(corpora)) for a in args]
    paths = [f"paths.root_dir={tmp_path}", f"paths.output_dir={tmp_path}/run"]
    data = build_data(compose_config([*args, *paths]))
    assert data.valid_set.speech.root == corpora / "speech" / "valid" and len(data.train_set.noise.pools) == 2
    without_valid = [a for a in args if not a.startswith("data.valid.speech_dir")]
    with pytest.raises(UserError, match=r"^data\.valid\.speech_dir: .*valid/clean: folder not found"):
        build_data(compose_config([*without_valid, *paths]))
    # the same 16 kHz speech under spec=24k: refused at setup, naming the key and the prepare command
    with pytest.raises(UserError, match=r"^data\.train\.speech_dir: .*16000 Hz .*24000 Hz is needed.*prepare vbdmd"
                                        r".*--sample-rate 24000`"):
        build_data(compose_config([*args, *paths, "spec=24k"]))
@pytest.mark.parametrize("rate", [48000, 24000])
def test_mixing_follows_the_spectrogram_rate(tmp_path, corpus, rate):
    """spec=48k/24k: speech at that rate and 48 kHz noise are both read at it, crops and references sized for it;
    16 kHz speech is refused at construction with the prepare command that makes a copy at the rate."""
    spec = Spectrogram.for_rate(rate)
    rng = np.random.default_rng(0)
    for k in range(2):
        write_audio(tmp_path / "speech" / f"spk{k}" / "utt.wav", speech_like(2 * rate, rng, sr=rate), rate)
    dataset = MixingDataset(tmp_path / "speech", [corpus / "noise"], spec=spec, num_frames=FRAMES,
                            ref_seconds=0.25, length=2, seed=0)
    assert dataset.sample_rate == rate and dataset.ref_len == rate // 4
    example = dataset[0]
    assert example["x"].shape == example["y"].shape == (1, spec.num_bins, FRAMES)
    assert example["r_wav"].shape[-1] == rate // 4
    with pytest.raises(ValueError, match="spec.sample_rate"):
        MixingDataset(tmp_path / "speech", [corpus / "noise"], spec=spec, sample_rate=16000)
    with pytest.raises(DataConfigError, match=rf"utt.wav: sample rate 16000 Hz \(3 of 3 speech file\(s\)\), "
                                              rf"{rate} Hz is needed.*prepare vbdmd .*--sample-rate {rate}`") as err:
        MixingDataset(corpus / "speech", [corpus / "noise"], spec=spec, num_frames=FRAMES)
    assert err.value.key == "speech_dir"
