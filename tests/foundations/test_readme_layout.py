"""The README's Layout block is checked against the tree: it names every package and module of sgmse_nc/ and
every root script, and nothing it names is missing from the checkout. The block is a tree of
`<names>  <what they hold>` lines, two spaces of indent per level, a folder's entries under it."""
import re
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT, fenced_blocks

PACKAGE = REPO_ROOT / "sgmse_nc"


def layout_block(readme: Path) -> str:
    blocks = [b.text for b in fenced_blocks(readme, "") if b.section == "Layout"]
    assert blocks, "README.md has no ```-fenced block under '## Layout'"
    return blocks[0]


def named_paths(block: str) -> set[str]:
    """Paths the block names: files (`x.py`) and folders (`x/`) in its first column, nested by indent."""
    paths, folders = set(), {}  # depth -> the folder opened at that depth
    for line in block.splitlines():
        depth = (len(line) - len(line.lstrip(" "))) // 2
        names = re.split(r" {2,}", line.strip(), maxsplit=1)[0].split()
        if not names or not all(n.endswith(("/", ".py")) for n in names) or (depth and depth - 1 not in folders):
            continue  # a description carried over to the next line (indented past the names)
        folders = {d: f for d, f in folders.items() if d < depth}
        parent = folders.get(depth - 1, "")
        for name in names:
            paths.add(parent + name)
            if name.endswith("/"):
                folders[depth] = parent + name
    return paths


def tree_paths() -> set[str]:
    """Every package and module of sgmse_nc/ (the __init__.py of a subpackage is its folder) and root script."""
    paths = {p.name for p in REPO_ROOT.glob("*.py")} | {"sgmse_nc/", "sgmse_nc/__init__.py"}
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(REPO_ROOT).as_posix()
        if "__pycache__" in relative:
            continue
        paths.add(relative.removesuffix("__init__.py") if path.name == "__init__.py" else relative)
    return paths


def test_layout_names_every_module_package_and_root_script():
    named = named_paths(layout_block(REPO_ROOT / "README.md"))
    missing = sorted(tree_paths() - named)
    assert not missing, f"add these to the Layout block of README.md, with a few words each: {missing}"


def test_layout_names_nothing_that_is_not_there():
    named = named_paths(layout_block(REPO_ROOT / "README.md"))
    stale = sorted(p for p in named if not (REPO_ROOT / p).exists())
    assert not stale, f"the Layout block of README.md names paths that do not exist: {stale}"


@pytest.mark.parametrize("planted", ["module", "package"])
def test_the_check_sees_a_new_module_or_package(tmp_path, monkeypatch, planted):
    block = ("sgmse_nc/  the package\n  io.py  writes\n  nets/  networks\n    ncsnpp.py  NCSN++ with a description\n"
             "                 carried over: not/ a/ path.py\n")
    assert named_paths(block) == {"sgmse_nc/", "sgmse_nc/io.py", "sgmse_nc/nets/", "sgmse_nc/nets/ncsnpp.py"}
    (tmp_path / "sgmse_nc" / "nets").mkdir(parents=True)
    for path in ("sgmse_nc/__init__.py", "sgmse_nc/io.py", "sgmse_nc/nets/__init__.py", "sgmse_nc/nets/ncsnpp.py"):
        (tmp_path / path).write_text("")
    new = {"module": "sgmse_nc/nets/layers.py", "package": "sgmse_nc/eval/__init__.py"}[planted]
    (tmp_path / new).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / new).write_text("")
    monkeypatch.setattr(f"{__name__}.REPO_ROOT", tmp_path)
    monkeypatch.setattr(f"{__name__}.PACKAGE", tmp_path / "sgmse_nc")
    assert tree_paths() - named_paths(block) - {"sgmse_nc/__init__.py"} == {new.removesuffix("__init__.py")}
