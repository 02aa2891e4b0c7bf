"""The reference policy (sgmse_nc.data.honesty) and the strategies that exist at deployment, on synthetic
stand-ins of each leak: copies at any gain/lag/sub-sample shift, looped events (here and in
tests/test_builders.py), whole-utterance validation (tests/test_references.py, tests/test_demo.py), VB-DEMAND
(tests/test_prepare_vbdmd.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sgmse_nc.audio import resample_audio, write_audio
from sgmse_nc.data.datamodule import ReferenceCounts
from sgmse_nc.data.errors import HonestyError
from sgmse_nc.data.honesty import Candidate, ReferencePolicy, similarity
from sgmse_nc.data.mixing import MixingDataset
from sgmse_nc.data.pauses import NoPauseError, pause_runs, reference_from_noisy_pauses
from sgmse_nc.data.synthetic import make_noise, speech_like

SR = 16000


def test_similarity_scores_copies_one_and_independent_stretches_low():
    rng = np.random.default_rng(0)
    for kind in ("white", "brown", "hum", "impulsive", "babble"):
        x = make_noise(kind, 3 * SR, rng)
        noise, independent = x[:2 * SR], x[2 * SR + 4000:2 * SR + 8000]
        assert similarity(independent, noise).whitened < 0.5, kind  # raw brown/hum stretches correlate highly
        copy = -2.5 * x[7000:11000]  # any gain, sign and lag
        assert similarity(copy, noise).whitened > 0.95 and similarity(copy, noise).is_copy(), kind
    # a copy half a sample off (a resampled pool) is still a copy
    x = make_noise("pink", 3 * SR, rng)
    shifted = resample_audio(torch.from_numpy(x).float(), 1, 2)[1::2].numpy()
    assert similarity(shifted[9000:13000], x[:2 * SR]).is_copy()
    # window-normalised: a short reference copying a stretch of a long noise scores 1, and so does a long
    # reference holding the whole (short) noise
    assert similarity(x[:2 * SR], x[SR:SR + 4000]).whitened > 0.99


def test_policy_rejects_then_fails_clearly_or_counts_the_null():
    rng = np.random.default_rng(1)
    noise = torch.from_numpy(make_noise("white", SR, rng))
    copy = Candidate(0.5 * noise[:4000], "copy", "0", "same_recording_disjoint")
    overlap = Candidate(torch.from_numpy(make_noise("white", 4000, rng)), "o", "0", "x", overlapping=True)
    honest = Candidate(torch.from_numpy(make_noise("white", 4000, rng)), "other", "7", "same_class_other_recording")
    choice = ReferencePolicy().choose(noise, [copy, overlap, honest], 4000, "item")
    assert (choice.source, choice.rejected_copy, choice.rejected_overlap) == ("other", 1, 1) and choice.xcorr < 0.5
    with pytest.raises(HonestyError, match="item: no honest noise reference.*1 were near-copies"):
        ReferencePolicy().choose(noise, [copy], 4000, "item")
    policy = ReferencePolicy(on_failure="null")
    choice = policy.choose(noise, [copy, copy], 4000, "item")
    assert choice.null and torch.all(choice.reference == 0) and policy.counts["null"] == 1
    assert policy.counts["rejected_copy"] == 2
    counts = ReferenceCounts()
    counts.add({name: torch.stack([value, value]) for name, value in choice.batch_fields().items()})
    assert counts.values["ref_null"] == 2 and counts.values["ref_rejected_copy"] == 4


def test_dynamic_mixing_rejects_looped_event_references(tmp_path):
    rng = np.random.default_rng(3)
    write_audio(tmp_path / "speech" / "u0.wav", speech_like(2 * SR, rng), SR)
    for label in ("dog", "bell"):
        for k in range(2):
            event = rng.standard_normal(4000) * np.hanning(4000)
            write_audio(tmp_path / "noise" / label / f"{k}.wav", 0.2 * np.tile(event, 25), SR)
    data = MixingDataset(tmp_path / "speech", [{"root": tmp_path / "noise", "labels": "subfolder"}],
                         num_frames=64, length=6)
    for index in range(len(data)):
        example = data[index]
        assert example["ref_rejected_copy"] >= 4 and not example["ref_null"]  # own recording: loops of itself
        assert example["ref_xcorr"] < 0.5
    unlabelled = MixingDataset(tmp_path / "speech", [tmp_path / "noise"], num_frames=64, length=2, on_failure="null")
    example = unlabelled[0]  # no class to take another recording from: the null condition, counted
    assert example["ref_null"] and example["ref_rejected_copy"] == 4


def known_pauses(seed: int = 0):
    """Noisy speech with talk in [0.5, 1.5) s and [2.5, 3.2) s of a 4 s file, white noise at 10 dB; `speech`
    marks the audible speech samples (the gaps between words are pauses too)."""
    rng = np.random.default_rng(seed)
    clean = np.zeros(4 * SR)
    for a, b in ((0.5, 1.5), (2.5, 3.2)):
        clean[int(a * SR):int(b * SR)] = speech_like(int((b - a) * SR), rng)
    audible = np.abs(clean) > 1e-4 * np.abs(clean).max()
    speech = audible
    noise = make_noise("white", 4 * SR, rng)
    noise *= np.sqrt(np.mean(clean[speech] ** 2) / np.mean(noise ** 2) / 10)
    return torch.from_numpy(0.3 * (clean + noise)).float(), speech


@pytest.mark.parametrize("vad", [True, False], ids=["webrtcvad", "energy_fallback"])
def test_from_noisy_pauses_returns_stretches_inside_the_pauses(vad, monkeypatch):
    if not vad:
        monkeypatch.setattr("sgmse_nc.data.pauses._vad_speech", lambda frames, sample_rate: None)
    else:
        pytest.importorskip("webrtcvad")
    noisy, speech = known_pauses()
    runs = pause_runs(noisy, SR)
    assert sum(b - a for a, b in runs) > 1.5 * SR  # most of the 2.3 s of pause is found
    for a, b in runs:
        assert not speech[a:b].any(), (a / SR, b / SR)  # and nothing inside speech
    reference = reference_from_noisy_pauses(noisy, SR, seconds=1.0)
    assert reference.shape == (SR,)
    pieces = torch.cat([noisy[a:b] for a, b in runs])
    assert torch.equal(reference, pieces[:SR])
    with pytest.raises(NoPauseError, match="no pause of at least 2.5 s.*`ref_dir`"):
        reference_from_noisy_pauses(noisy, SR, 1.0, min_seconds=2.5)  # only 2.3 s of pauses in all



def test_enhance_takes_references_from_the_pauses_or_names_the_file(tmp_path):
    from sgmse_nc.enhance.folder import EnhanceOptions, enhance_folder, pause_reference
    from sgmse_nc.errors import UserError

    noisy, _ = known_pauses()
    assert pause_reference(tmp_path / "a.wav", noisy, 0.5).shape == (SR // 2,)
    burst = torch.from_numpy(make_noise("white", 4000, np.random.default_rng(0)) * np.hanning(4000)).float()
    with pytest.raises(NoPauseError, match="b.wav: no pause"):  # a burst: quiet only at its very edges
        pause_reference(tmp_path / "b.wav", burst, 0.5)
    with pytest.raises(UserError, match="`ref_dir` goes with `ref_strategy='noise_ref_dir'`"):
        enhance_folder(tmp_path / "x.ckpt", tmp_path, tmp_path / "out", EnhanceOptions(ref_strategy="from_noisy_pauses"),
                       ref_dir=tmp_path)
