"""The synthetic demo corpus (sgmse_nc.data.prepare.demo) and its signal generators (sgmse_nc.data.synthetic)."""
import csv
import hashlib
import json
import re

import numpy as np
import pytest
import soundfile as sf

from sgmse_nc.data import synthetic
from sgmse_nc.data.prepare import demo
from sgmse_nc.data.prepare.demo import DemoCorpusError, DemoParams, ensure_demo_corpus, make_demo_corpus
from tests.helpers import REPO_ROOT

SR = 16000
# Small and short, one utterance per (noise type, SNR) is not needed: a handful per subset suffices.
SMALL = dict(num_train=8, num_valid=2, num_test=3, seconds=(1.0, 1.5), ref_seconds=(1.0, 1.2),
             snrs=(-5, 0, 5, 10), test_snrs=(0, 5, 10), seed=0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_demo_corpus(tmp_path_factory.mktemp("demo") / "corpus", **SMALL)


def manifest(root, subset):
    with open(root / subset / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def read(root, subset, folder, utt_id):
    wav, sr = sf.read(root / subset / folder / f"{utt_id}.wav", dtype="float64")
    assert sr == SR
    return wav


def file_digests(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != demo.DONE_FILE}


# ------------------------------------------------------------------------------------------ corpus

def test_layout_and_matching_names(corpus):
    for subset, count in (("train", 8), ("valid", 2), ("test", 3)):
        ids = {row["id"] for row in manifest(corpus, subset)}
        assert len(ids) == count
        for folder in ("clean", "noisy", "noise_ref"):
            names = {p.stem for p in (corpus / subset / folder).glob("*.wav")}
            assert names == ids, f"{subset}/{folder}"
    assert not list(corpus.parent.glob(".*partial*")), "the temporary build folder was left behind"
    record = json.loads((corpus / demo.DONE_FILE).read_text())
    assert record["params"] == DemoParams(**SMALL).to_json()
    assert record["summary"]["train"]["count"] == 8


def test_manifest_contents(corpus):
    for subset in demo.SUBSETS:
        rows = manifest(corpus, subset)
        assert list(rows[0]) == list(demo.MANIFEST_COLUMNS)
        snrs = SMALL["test_snrs"] if subset == "test" else SMALL["snrs"]
        for row in rows:
            assert row["noise_type"] in synthetic.NOISES
            assert float(row["snr"]) in snrs
            assert row["id"].startswith(row["speaker"] + "_")
            assert row["speaker"].startswith(demo.SPEAKER_PREFIX[subset])
    train = manifest(corpus, "train")
    assert len({r["noise_type"] for r in train}) >= 4
    train_speakers = {r["speaker"] for r in train}
    assert train_speakers.isdisjoint({r["speaker"] for r in manifest(corpus, "test")})
    assert len(train_speakers) == demo.SPEAKERS_PER_SUBSET["train"]


def test_conditions_are_balanced():
    params = DemoParams(**{**SMALL, "num_train": 2 * 7 * 4})  # two full blocks of (noise type, SNR)
    conditions = demo.subset_conditions(params, "train")
    assert sorted(conditions) == sorted(2 * [(n, float(s)) for n in synthetic.NOISES for s in SMALL["snrs"]])


def test_lengths_snr_and_no_clipping(corpus):
    for subset in demo.SUBSETS:
        for row in manifest(corpus, subset):
            clean, noisy = read(corpus, subset, "clean", row["id"]), read(corpus, subset, "noisy", row["id"])
            ref = read(corpus, subset, "noise_ref", row["id"])
            assert clean.shape == noisy.shape
            assert SMALL["seconds"][0] <= clean.size / SR <= SMALL["seconds"][1]
            assert abs(clean.size / SR - float(row["seconds"])) < 1e-3
            assert SMALL["ref_seconds"][0] <= ref.size / SR <= SMALL["ref_seconds"][1]
            achieved = 10 * np.log10(np.sum(clean ** 2) / np.sum((noisy - clean) ** 2))
            assert abs(achieved - float(row["snr"])) < 0.5, row
            for wav in (clean, noisy, ref):
                assert np.abs(wav).max() < 0.99


def test_noise_ref_is_another_stretch_of_the_same_noise(corpus):
    for subset in demo.SUBSETS:
        for row in manifest(corpus, subset):
            clean, noisy = read(corpus, subset, "clean", row["id"]), read(corpus, subset, "noisy", row["id"])
            noise, ref = noisy - clean, read(corpus, subset, "noise_ref", row["id"])
            n = min(noise.size, ref.size)
            assert not np.allclose(ref[:n], noise[:n], atol=1e-3)
            assert not np.allclose(ref[-n:], noise[-n:], atol=1e-3)


def test_noise_ref_white_noise_level_matches_and_does_not_correlate():
    params = DemoParams(**SMALL)
    speakers = demo.subset_speakers(params, "train")
    utt = demo.make_utterance(params, "train", 0, "white", 5.0, speakers)
    noise = (utt.noisy - utt.clean).astype(np.float64)
    ref = utt.noise_ref.astype(np.float64)
    level_db = 10 * np.log10(np.mean(ref ** 2) / np.mean(noise ** 2))
    assert abs(level_db) < 1.0  # same process, same gain
    # Not a copy of any part of the mixed noise: the normalised cross-correlation stays small at every lag.
    xcorr = np.correlate(noise, ref, mode="full") / np.sqrt(np.sum(noise ** 2) * np.sum(ref ** 2))
    assert np.abs(xcorr).max() < 0.2


def test_deterministic_from_seed(tmp_path, corpus):
    again = make_demo_corpus(tmp_path / "again", **SMALL)
    assert file_digests(again) == file_digests(corpus)
    other = make_demo_corpus(tmp_path / "other", **{**SMALL, "seed": 1})
    a, b = file_digests(corpus), file_digests(other)
    assert a.keys() == b.keys()
    wavs = [k for k in a if k.endswith(".wav")]
    assert all(a[k] != b[k] for k in wavs)


def test_more_utterances_keep_the_first_ones(tmp_path, corpus):
    bigger = make_demo_corpus(tmp_path / "bigger", **{**SMALL, "num_train": 10})
    first = {row["id"]: row for row in manifest(corpus, "train")}
    rows = {row["id"]: row for row in manifest(bigger, "train")}
    # Conditions come from the same shuffled block, audio from per-utterance seeds: nothing moves.
    for utt_id, row in first.items():
        assert rows[utt_id] == row
        assert np.array_equal(read(corpus, "train", "noisy", utt_id), read(bigger, "train", "noisy", utt_id))


def test_idempotent_and_never_overwrites(tmp_path, monkeypatch):
    out = tmp_path / "corpus"
    params = {**SMALL, "num_train": 2, "num_valid": 1, "num_test": 1}
    assert ensure_demo_corpus(out, **params) == out.absolute()
    before = file_digests(out)

    def must_not_generate(*args, **kwargs):
        raise AssertionError("regenerated an existing corpus")

    monkeypatch.setattr(demo, "_write_subset", must_not_generate)
    assert ensure_demo_corpus(out, **{k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}) \
        == out.absolute()  # lists (as Hydra passes them) count as the same parameters
    with pytest.raises(DemoCorpusError, match="other parameters.*seed"):
        ensure_demo_corpus(out, **{**params, "seed": 7})
    assert file_digests(out) == before

    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("not a corpus")
    with pytest.raises(DemoCorpusError, match="not a finished demo corpus"):
        ensure_demo_corpus(stranger, **params)
    with pytest.raises(TypeError, match="num_trian"):
        ensure_demo_corpus(tmp_path / "typo", num_trian=3)


def test_interrupted_run_leaves_nothing(tmp_path, monkeypatch):
    calls = []
    real = demo.make_utterance

    def fail_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(demo, "make_utterance", fail_on_third)
    with pytest.raises(KeyboardInterrupt):
        make_demo_corpus(tmp_path / "corpus", **SMALL)
    assert list(tmp_path.iterdir()) == []


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="noise_types.*rain"):
        DemoParams(noise_types=("white", "rain"))
    with pytest.raises(ValueError, match="seconds"):
        DemoParams(seconds=(3.0, 2.0))


def test_cli_prints_summary(tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["--out", str(out), "--num-train", "2", "--num-valid", "1", "--num-test", "1",
            "--seconds", "1", "1.2", "--noise-types", "white", "hum", "--seed", "3"]
    demo.main(argv)
    printed = capsys.readouterr().out
    assert "written" in printed and re.search(r"train\s+2 utterances", printed) and "hum:" in printed
    demo.main(argv)
    assert "nothing to do" in capsys.readouterr().out
    assert demo.main(argv[:-1] + ["4"]) == 2
    assert "other parameters (seed: 3 -> 4)" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------- signals

def frame_energies_db(x, frame=320):
    frames = x[: x.size // frame * frame].reshape(-1, frame)
    energy = np.mean(frames ** 2, axis=1) + 1e-20
    return 10 * np.log10(energy / energy.max())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_speech_has_pauses_and_pitch_harmonics(seed):
    rng = np.random.default_rng(seed)
    speaker = synthetic.random_speaker(rng)
    x = synthetic.speech_like(3 * SR, rng, SR, speaker)
    assert x.dtype == np.float32 and x.shape == (3 * SR,) and np.isfinite(x).all()
    energies = frame_energies_db(x)
    assert np.mean(energies < -40) > 0.1, "expected pauses (near-silent 20 ms frames)"
    assert np.mean(energies > -15) > 0.2, "expected active speech"

    # The loudest 40 ms frame is voiced: its autocorrelation peaks at the pitch period (4-11 ms).
    frame = 640
    frames = x[: x.size // frame * frame].reshape(-1, frame).astype(np.float64)
    voiced = frames[np.argmax(np.mean(frames ** 2, axis=1))]
    voiced = voiced - voiced.mean()
    ac = np.correlate(voiced, voiced, mode="full")[frame - 1:]
    ac /= ac[0]
    low, high = int(0.004 * SR), int(0.011 * SR)
    lag = low + int(np.argmax(ac[low:high + 1]))
    assert ac[lag] > 0.5
    assert SR / speaker.f0_high * 0.9 <= lag <= SR / speaker.f0_low * 1.1


def test_speakers_differ():
    rng = np.random.default_rng(0)
    speakers = [synthetic.random_speaker(rng) for _ in range(20)]
    for s in speakers:
        assert 90 <= s.f0_low < s.f0_high <= 250
    assert np.ptp([s.f0_low for s in speakers]) > 30
    assert np.ptp([s.formant_scale for s in speakers]) > 0.1


@pytest.mark.parametrize("name", list(synthetic.NOISES))
def test_noise_generators(name):
    x = synthetic.make_noise(name, 2 * SR, np.random.default_rng(0), SR)
    assert x.dtype == np.float32 and x.shape == (2 * SR,) and np.isfinite(x).all()
    assert abs(np.sqrt(np.mean(x.astype(np.float64) ** 2)) - synthetic.LEVEL_RMS) < 1e-3
    assert np.array_equal(x, synthetic.make_noise(name, 2 * SR, np.random.default_rng(0), SR))
    assert not np.array_equal(x, synthetic.make_noise(name, 2 * SR, np.random.default_rng(1), SR))


def low_band_share(x, cutoff=500.0):
    power = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / SR)
    return power[freqs < cutoff].sum() / power.sum()


def test_noise_types_are_distinct():
    rng = np.random.default_rng(0)
    noises = {name: synthetic.make_noise(name, 4 * SR, rng, SR).astype(np.float64) for name in synthetic.NOISES}
    # Spectral tilt orders white < pink < brown.
    assert low_band_share(noises["white"]) < low_band_share(noises["pink"]) < low_band_share(noises["brown"])
    # Non-stationary noises vary far more in short-time level than white noise does.
    spread = {name: np.std(frame_energies_db(x)) for name, x in noises.items()}
    for name in synthetic.NON_STATIONARY:
        assert spread[name] > 3 * spread["white"], (name, spread)
    # Hum is tonal: a few spectral lines hold most of its power.
    power = np.sort(np.abs(np.fft.rfft(noises["hum"])) ** 2)[::-1]
    assert power[:200].sum() / power.sum() > 0.5
    with pytest.raises(ValueError, match="unknown synthetic noise type 'rain'"):
        synthetic.make_noise("rain", 100, rng)


def test_filter_frames_with_flat_response_is_identity():
    x = np.random.default_rng(0).standard_normal(5000)
    y = synthetic.filter_frames(x, lambda centres: np.ones((centres.size, 257)))
    np.testing.assert_allclose(y, x, atol=1e-10)


def test_paired_dataset_and_hydra_read_the_corpus(corpus):
    from hydra.utils import instantiate

    from sgmse_nc.data.paired import PairedFolderDataset

    dataset = PairedFolderDataset(corpus, "valid", num_frames=64)
    assert len(dataset) == 2
    example = dataset[0]
    assert example["id"] == manifest(corpus, "valid")[0]["id"]
    assert example["x"].shape == example["y"].shape
    # A config can make the corpus as the dataset's root (Hydra instantiates nested nodes first).
    config = {"_target_": "sgmse_nc.data.paired.PairedFolderDataset", "subset": "test", "num_frames": 64,
              "root": {"_target_": "sgmse_nc.data.prepare.demo.ensure_demo_corpus", "out_dir": str(corpus),
                       **{k: list(v) if isinstance(v, tuple) else v for k, v in SMALL.items()}}}
    assert len(instantiate(config)) == 3


def test_whole_utterance_validation_never_gets_the_mixed_noise(corpus):
    """conf/data/demo.yaml's validation (whole utterances for the metrics): every reference is a stretch of
    the corpus's noise_ref, below the near-copy threshold against the noise mixed into that utterance."""
    from omegaconf import OmegaConf

    from sgmse_nc.data.datamodule import whole_utterances
    from sgmse_nc.data.honesty import DEFAULT_THRESHOLD, similarity
    from sgmse_nc.data.paired import PairedFolderDataset

    node = OmegaConf.load(REPO_ROOT / "conf" / "data" / "demo.yaml").valid
    for subset in ("valid", "test"):
        dataset = PairedFolderDataset(corpus, subset, num_frames=node.num_frames, ref_seconds=node.ref_seconds,
                                      reference=node.reference)
        whole = whole_utterances(dataset, len(dataset))
        for i in range(len(whole)):
            example = whole[i]
            clean, noisy = dataset.load_pair(i)
            measured = similarity(example["r_wav"] * example["norm"], noisy - clean)
            assert measured.whitened < DEFAULT_THRESHOLD and not measured.is_copy()
            assert float(example["ref_xcorr"]) == pytest.approx(measured.whitened, abs=0.02)
    rows = manifest(corpus, "valid")
    assert all(r["reference_relation"] == "same_process_disjoint" and float(r["reference_max_xcorr"]) < 0.5
               for r in rows)
