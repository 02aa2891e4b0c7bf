"""A normal run's console is read by people: no warning or INFO line repeats once per epoch (Lightning's
"`weights_only` was not set" at every last.ckpt save did, 20 times in the demo)."""
import collections
import os
import re
import subprocess
import sys

import pytest

from tests.helpers import REPO_ROOT

EPOCHS = 4


@pytest.mark.slow  # a 4-epoch train.py run of the tiny demo model (a minute on 2 busy cores)
def test_no_line_repeats_once_per_epoch(tmp_path):
    args = [sys.executable, "train.py", "experiment=demo", f"paths.root_dir={tmp_path}",
            f"paths.data_dir={tmp_path}/data", "+data.prepare.num_train=4", "+data.prepare.num_valid=2",
            "+data.prepare.num_test=2", "data.batch_size=2", "data.num_eval_files=0", "data.train.num_frames=64",
            "sampler.N=2", f"trainer.max_epochs={EPOCHS}", "trainer.check_val_every_n_epoch=1"]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    out = subprocess.run(args, cwd=REPO_ROOT, capture_output=True, text=True, env=env, timeout=1800)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [re.sub(r"^(\[[^\]]*\])+\s*-?\s*", "", line).strip()  # Hydra's "[time][logger][LEVEL]" prefix varies
             for text in (out.stdout, out.stderr) for line in re.split(r"[\r\n]", text)]
    counts = collections.Counter(line for line in lines if line and "it/s" not in line and "s/it" not in line)
    repeated = {line: n for line, n in counts.items() if n >= EPOCHS - 1}
    assert not repeated, repeated
