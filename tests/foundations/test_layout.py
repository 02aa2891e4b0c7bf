"""The house by stage: every package imports only from the packages before it, no import cycle between
modules, no module imports another module's private names, and every package says what it holds."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
from tests.helpers import REPO_ROOT

PACKAGE = REPO_ROOT / "sgmse_nc"
# The stages in import order; foundations are the top-level modules.
STAGES = ["<foundations>", "nets", "encoders", "diffusion", "data", "enhance", "eval", "train", "study"]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def stage(module: str) -> int:
    parts = module.split(".")
    if module == "sgmse_nc":  # the front door: the map and the Python API, exported lazily from every stage
        return len(STAGES)
    if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()):
        return STAGES.index(parts[1])
    return 0


def imports(path: Path):
    """(imported module, [names], line) for every import of sgmse_nc in the file, lazy ones included."""
    tree = ast.parse(path.read_text())
    here = module_name(path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("sgmse_nc"):
                    yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                pkg = here.split(".") if path.name == "__init__.py" else here.split(".")[:-1]
                pkg = pkg[:len(pkg) - node.level + 1]
                base = ".".join(pkg + ([base] if base else []))
            if base.startswith("sgmse_nc"):
                names = [a.name for a in node.names]
                # `from pkg import module` imports the module
                modules = [f"{base}.{n}" for n in names if (PACKAGE.parent / f"{base}.{n}".replace(".", "/")).with_suffix(".py").exists()
                           or (PACKAGE.parent / f"{base}.{n}".replace(".", "/")).is_dir()]
                if modules:
                    for m in modules:
                        yield m, [], node.lineno
                else:
                    yield base, names, node.lineno


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_package_has_a_docstring():
    missing = [str(p.relative_to(PACKAGE.parent)) for p in PACKAGE.rglob("__init__.py")
               if not ast.get_docstring(ast.parse(p.read_text()))]
    assert not missing, f"packages without a docstring saying what they hold: {missing}"


def test_no_import_points_up_a_stage():
    upward = []
    for name, path in all_modules().items():
        for target, _, line in imports(path):
            if stage(target) > stage(name):
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}")
    assert not upward, "imports that point up a stage:\n" + "\n".join(upward)


def test_no_private_names_imported_from_another_module():
    private = []
    for name, path in all_modules().items():
        for target, names, line in imports(path):
            bad = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if bad and target != name:
                private.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {bad} from {target}")
    assert not private, "make these public in the module that owns them:\n" + "\n".join(private)


def test_no_import_cycles():
    modules = all_modules()
    graph = {name: {t for t, _, _ in imports(path) if t in modules and t != name} for name, path in modules.items()}
    # a package's __init__ importing its own modules is not a cycle of ideas; skip edges into a package itself
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def bench_imports_of_tests(bench: Path) -> list[str]:
    """Imports of the tests package in bench/ scripts (`file:line`)."""
    found = []
    for path in sorted(bench.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{path.name}:{node.lineno}" for n in names if n == "tests" or n.startswith("tests.")]
    return found


def test_bench_scripts_do_not_import_the_tests(tmp_path):
    """Benches run without the test suite: code both need lives in sgmse_nc/ or bench/ (e.g. bench/sgmse_reference.py)."""
    found = bench_imports_of_tests(REPO_ROOT / "bench")
    assert not found, f"bench scripts importing tests/: {found}"
    (tmp_path / "planted.py").write_text("def main():\n    from tests.diffusion import test_x\n")
    assert bench_imports_of_tests(tmp_path) == ["planted.py:2"]


@pytest.mark.parametrize("planted", ["upward", "private", "cycle"])
def test_the_checks_can_fail(tmp_path, monkeypatch, planted):
    """Plant each kind of bad import in a copy of a tiny tree: its check fails."""
    root = tmp_path / "sgmse_nc"
    (root / "diffusion").mkdir(parents=True)
    (root / "train").mkdir()
    (root / "__init__.py").write_text('"""map"""\n')
    for pkg in ("diffusion", "train"):
        (root / pkg / "__init__.py").write_text('"""pkg"""\n')
    (root / "train" / "run.py").write_text("def _helper():\n    pass\n")
    body = {"upward": "from sgmse_nc.train.run import run\n",
            "private": "from sgmse_nc.diffusion.model import _x\n",
            "cycle": "import sgmse_nc.diffusion.sde\n"}[planted]
    (root / "diffusion" / "model.py").write_text(body + "_x = 1\n")
    (root / "diffusion" / "sde.py").write_text("import sgmse_nc.diffusion.model\n" if planted == "cycle" else "")
    if planted == "private":
        (root / "diffusion" / "sde.py").write_text("from sgmse_nc.diffusion.model import _x\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["x"]), "PACKAGE", root)
    check = {"upward": test_no_import_points_up_a_stage, "private": test_no_private_names_imported_from_another_module,
             "cycle": test_no_import_cycles}[planted]
    with pytest.raises(AssertionError):
        check()
