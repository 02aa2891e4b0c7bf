import os

import pytest
import torch

from sgmse_nc import threads


def test_auto_takes_only_the_cores_free_now(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (1.2, 0, 0))
    assert threads.free_cores() == 3
    monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 0, 0))  # a busy shared machine: one thread
    assert threads.free_cores() == 1


def test_set_threads_sets_torch_and_refuses_nonsense():
    before = torch.get_num_threads()
    try:
        assert threads.set_threads(1) == 1 and torch.get_num_threads() == 1
        assert threads.set_threads("auto") >= 1
        for bad in (0, "two", 1.5, True):
            with pytest.raises(ValueError, match="auto"):
                threads.set_threads(bad)
    finally:
        torch.set_num_threads(before)
