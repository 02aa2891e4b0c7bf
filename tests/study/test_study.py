"""The study in miniature end to end on the demo corpus (two rows, a few steps, two seeds), and its options."""
import os
import subprocess
import sys

import pandas as pd
import pytest

from sgmse_nc.study.cli import main
from tests.helpers import REPO_ROOT


def test_bad_options_are_one_error_line(tmp_path, capsys):
    """Choices are the parser's (tests/commands/test_option_values.py walks them); holding every noise class out
    is the plan's own check."""
    with pytest.raises(SystemExit) as stop:
        main(["--rows", "nope", "--out", str(tmp_path)])
    assert stop.value.code == 2
    assert "error: argument --rows: invalid choice: 'nope' (choose from 'sgmse_baseline', 'nc_baseline', " \
           "'cfg_p0.2')" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--scale", "huge", "--out", str(tmp_path)])
    assert main(["--unseen", "white", "pink", "brown", "babble", "hum", "traffic", "impulsive",
                 "--out", str(tmp_path)]) == 2
    assert "error: --unseen white pink" in capsys.readouterr().err


@pytest.mark.slow
def test_miniature_study_end_to_end_and_resume(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "sgmse_nc.study", "--scale", "smoke", "--out", str(tmp_path / "s"),
               "--rows", "sgmse_baseline", "cfg_p0.2", "--seeds", "1", "2"]
    out = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    study = tmp_path / "s"
    for row in ("sgmse_baseline", "cfg_p0.2"):
        for seed in (1, 2):
            assert (study / "runs" / row / f"seed{seed}" / "checkpoints" / "last.ckpt").is_file()
    text = (study / "study.md").read_text()
    for name in ("in_distribution", "unseen_noise", "nonstationary"):
        rows = pd.read_csv(study / "report" / name / "paired.csv")
        # the CFG row against the baseline at every w, and w = 1, 3 against w = 0; pooled over both seeds
        pairs = set(zip(rows["a"], rows["b"], rows["against"]))
        assert ("cfg_p0_2 w=1", "sgmse_baseline w=0", "baseline sgmse_baseline") in pairs
        assert ("cfg_p0_2 w=3", "cfg_p0_2 w=0", "w=0") in pairs
        assert (rows["n_seeds"] == 2).all() and rows["seeds_units"].eq(2).all()
        assert f"# {name}: paired differences" in text
    assert "cluster-robust" in text and (study / "report" / "report.md").is_file()
    # a rerun resumes: nothing is trained again
    again = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, env=env)
    assert again.returncode == 0 and "train.py" not in again.stderr + again.stdout
