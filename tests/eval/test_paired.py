"""Paired differences with 95% intervals, against hand-computed values (sgmse_nc.eval.paired)."""
import math

import pandas as pd
import pytest

from sgmse_nc.eval.comparison import System
from sgmse_nc.eval.paired import (clustered_interval, cluster_column, markdown, paired_rows, study_pairs,
                                  t_interval)

T3, T1 = 3.182446305284263, 12.706204736174705  # t quantiles 0.975 with 3 and 1 degrees of freedom


def test_t_interval_by_hand():
    # d = 1, 2, 3, 4: mean 2.5, sd sqrt(5/3), se sqrt(5/3)/2
    interval = t_interval([1.0, 2.0, 3.0, 4.0])
    half = T3 * math.sqrt(5 / 3) / 2
    assert interval.mean == 2.5 and interval.units == 4
    assert interval.low == pytest.approx(2.5 - half, abs=1e-12) and interval.high == pytest.approx(2.5 + half)
    assert math.isnan(t_interval([1.0]).low)


def test_clustered_interval_by_hand():
    # residuals -1.5 -0.5 | 0.5 1.5: cluster sums -2, 2; Var = 2/1 * (4 + 4) / 4^2 = 1; t with 1 dof
    interval = clustered_interval([1.0, 2.0, 3.0, 4.0], ["a", "a", "b", "b"])
    assert interval.units == 2 and interval.mean == 2.5
    assert interval.low == pytest.approx(2.5 - T1) and interval.high == pytest.approx(2.5 + T1)
    # one file per cluster: CR1 = (n/(n-1)) * sum e^2 / n^2 = the usual s^2/n, so the same as the files interval
    same = clustered_interval([1.0, 2.0, 3.0, 4.0], ["a", "b", "c", "d"])
    assert (same.low, same.high) == pytest.approx((t_interval([1.0, 2.0, 3.0, 4.0]).low,
                                                   t_interval([1.0, 2.0, 3.0, 4.0]).high))
    assert math.isnan(clustered_interval([1.0, 2.0], ["a", "a"]).low)


def frame(values):
    return pd.DataFrame({"id": [f"f{i}" for i in range(len(values))], "pesq": values})


def test_study_pairs_compare_each_run_with_the_baseline_and_each_w_with_w0():
    systems = [System({"run": "base", "w": "0"}, frame([1.0] * 4)),
               System({"run": "cfg", "w": "0"}, frame([1.5] * 4)), System({"run": "cfg", "w": "1"}, frame([2.0] * 4)),
               System({"run": "cfg", "w": "3"}, error="failed")]
    pairs = [(a["run"], a["w"], b["run"], b["w"], why) for a, b, why in study_pairs(systems, baseline="base")]
    assert pairs == [("cfg", "0", "base", "0", "baseline base"), ("cfg", "1", "base", "0", "baseline base"),
                     ("cfg", "1", "cfg", "0", "w=0")]


def test_paired_rows_files_clusters_and_seeds():
    groups = pd.DataFrame({"category": ["a", "a", "b", "b"], "snr": ["0", "5", "0", "5"]},
                          index=[f"f{i}" for i in range(4)])
    assert cluster_column(groups.columns) == "category"
    base = System({"run": "base", "w": "0"}, frame([1.0, 1.0, 1.0, 1.0]))
    # two seeds of the CFG run: per-file differences (1,2,3,4) and (3,4,5,6); averaged per file: 2,3,4,5
    seeds = [System({"run": "cfg", "w": "1", "seed": "1"}, frame([2.0, 3.0, 4.0, 5.0])),
             System({"run": "cfg", "w": "1", "seed": "2"}, frame([4.0, 5.0, 6.0, 7.0]))]
    rows = paired_rows([base, *seeds], study_pairs([base, *seeds], "base"), ["pesq"], groups)
    (row,) = rows
    assert (row["n_files"], row["n_seeds"], row["mean"]) == (4, 2, 3.5)
    half = T3 * math.sqrt(5 / 3) / 2
    assert (row["files"].low, row["files"].high) == pytest.approx((3.5 - half, 3.5 + half))
    assert row["cluster_by"] == "category"
    assert (row["clustered"].low, row["clustered"].high) == pytest.approx((3.5 - T1, 3.5 + T1))
    # seeds: per-seed means 2.5 and 4.5 -> mean 3.5, sd sqrt(2), se 1, t with 1 dof
    assert (row["seeds"].low, row["seeds"].high) == pytest.approx((3.5 - T1, 3.5 + T1))
    text = markdown(rows)
    assert "| cfg w=1 | base w=0 (baseline base) | PESQ (16 kHz WB) | 4 | 2 | +3.50 |" in text
    assert "cluster-robust (CR1)" in text and "t interval over the per-seed mean differences" in text


def test_files_missing_from_one_system_are_left_out_of_the_pairs():
    a = System({"run": "a", "w": "1"}, frame([2.0, 3.0, float("nan")]))
    b = System({"run": "a", "w": "0"}, frame([1.0, 1.0, 1.0]).iloc[:3])
    (row,) = paired_rows([a, b], study_pairs([a, b]), ["pesq"])
    assert row["n_files"] == 2 and row["mean"] == 1.5 and row["clustered"] is None
