"""Every console script of pyproject.toml's [project.scripts] keeps the one contract of sgmse_nc.cli: --help prints
usage and exits 0; a bad option is exactly one `error:` line on stderr and exit status 2.

Each entry's function runs in a fresh interpreter from this checkout (not the installed script, which may
point at another checkout)."""
import subprocess
import sys

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest's own dependency
    import tomli as tomllib

from tests.helpers import REPO_ROOT

SCRIPTS = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
# Hydra's train also takes KEY=VALUE overrides: a key the config lacks is a bad option too.
BAD_OPTIONS = [(name, "--no-such-option") for name in SCRIPTS] + [("sgmse-train", "no_such_key=1")]


def run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    module, function = SCRIPTS[name].split(":")
    code = f"import sys; from {module} import {function}; sys.exit({function}())"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=600)


def test_the_commands_are_the_ones_the_readme_names():
    readme = (REPO_ROOT / "README.md").read_text()
    assert "sgmse-train" in SCRIPTS and all(f"| `{name}` |" in readme for name in SCRIPTS)  # the Commands table


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_help_prints_usage_and_exits_0(name):
    out = run_script(name, "--help")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "usage:" in out.stdout.lower(), out.stdout[:500]


@pytest.mark.parametrize(("name", "bad"), BAD_OPTIONS, ids=[f"{n} {b}" for n, b in BAD_OPTIONS])
def test_a_bad_option_is_one_error_line_and_exit_2(name, bad):
    out = run_script(name, bad)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, out.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr[-2000:]
    assert bad.split("=")[0].lstrip("-") in lines[0] or "required" in lines[0], lines[0]  # names what is wrong
