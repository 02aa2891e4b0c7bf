"""The one IO helper: atomic writes with the umask's permissions, one leftover pattern, markers."""
from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from sgmse_nc.audio import write_audio
from sgmse_nc.errors import short_list
from sgmse_nc.io import (atomic_path, input_holding, is_leftover, refuse_other_params, remove_leftovers, temp_name,
                         write_json, write_text_atomic, write_text_if_changed)


@pytest.fixture
def umask():
    """Set a umask for one test, restoring the previous one afterwards."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield os.umask
    os.umask(previous)


@pytest.mark.parametrize("mask", [0o022, 0o002])
def test_written_files_get_the_umask_permissions(tmp_path, umask, mask):
    umask(mask)
    normal = tmp_path / "normal.txt"
    normal.write_text("x")  # how any other program would create it
    expected = stat.S_IMODE(normal.stat().st_mode)
    assert expected == 0o666 & ~mask
    write_text_atomic(tmp_path / "a.txt", "x")
    write_audio(tmp_path / "a.wav", np.zeros(160, dtype=np.float32), 16000)
    for name in ("a.txt", "a.wav"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == expected, name


def test_failed_write_leaves_the_old_file_and_no_leftover(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]


def test_leftover_pattern(tmp_path):
    target = tmp_path / "sub" / "p232_001.wav"
    leftover = temp_name(target)
    assert leftover.parent == target.parent and leftover.suffix == ".wav" and is_leftover(leftover)
    for name in ("p232_001.wav", ".hidden.wav", "tmpab12cd.tmp.wav", "notes.tmp", ".a.wav.1234567.tmp.wav"):
        assert not is_leftover(tmp_path / name), name
    leftover.parent.mkdir()
    leftover.write_bytes(b"RIFF")
    target.write_bytes(b"RIFF")
    assert remove_leftovers(tmp_path) == 1
    assert not leftover.exists() and target.exists()


def test_write_only_if_changed(tmp_path):
    path = tmp_path / "m.json"
    assert write_json(path, {"b": 1, "a": [1, 2]})
    before = path.stat().st_mtime_ns, path.stat().st_ino
    assert not write_json(path, {"a": [1, 2], "b": 1})
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == before  # untouched
    assert write_text_if_changed(path, "other")
    assert path.read_text() == "other"


def test_refuse_other_params(tmp_path):
    marker = tmp_path / "out" / "DONE.json"
    assert refuse_other_params(marker, {"seed": 0}, "Fix it.") is None  # no marker: nothing to refuse
    write_json(marker, {"params": {"seed": 0, "snrs": [0, 5]}, "summary": {"items": 3}})
    assert refuse_other_params(marker, {"snrs": [0, 5], "seed": 0}, "Fix it.")["summary"] == {"items": 3}
    with pytest.raises(KeyError, match=r"other parameters \(seed: 0 -> 1\).*DONE.json.*Fix it\."):
        refuse_other_params(marker, {"seed": 1, "snrs": [0, 5]}, "Fix it.", KeyError)
    with pytest.raises(ValueError, match=r"params: .* -> None"):
        refuse_other_params(marker, {"seed": 0}, "Fix it.", key=None)  # the whole record is compared
    marker.write_text("{not json")
    with pytest.raises(ValueError, match="unreadable marker"):
        refuse_other_params(marker, {"seed": 0}, "Fix it.")


def test_input_holding_finds_the_input_folder_an_output_lies_in(tmp_path):
    inputs = {"noisy": tmp_path / "noisy", "reference": None, "clean": tmp_path / "clean"}
    assert input_holding(tmp_path / "clean" / "sub" / "out", inputs) == ("clean", tmp_path / "clean")
    assert input_holding(tmp_path / "noisy", inputs) == ("noisy", tmp_path / "noisy")  # the folder itself
    assert input_holding(tmp_path / "noisy_eval", inputs) is None  # a sibling whose name starts the same
    assert input_holding(tmp_path / "clean" / ".." / "out", inputs) is None  # resolved before comparing


def test_short_list_counts_what_it_leaves_out():
    assert short_list(["a", "b"]) == "a, b"
    assert short_list([f"f{i}" for i in range(7)]) == "f0, f1, f2, f3, f4 (+2 more)"
    assert short_list([1, 2, 3, 4], limit=3) == "1, 2, 3 (+1 more)"
