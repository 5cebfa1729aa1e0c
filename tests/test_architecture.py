"""docs/architecture.md's stage table is the tree: one name per stage across its module, CLI
subcommand, Kubeflow component, DVC stage, params section and test file.

    .venv/bin/pytest tests/test_architecture.py -q
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import yaml

import stage_table
from unireward.config import load_params

ROOT = Path(__file__).resolve().parents[1]


def test_the_stage_table_names_every_stage_once_and_each_name_is_real() -> None:
    from unireward.cli import app

    commands = {c.name for c in app.registered_commands}
    dvc_stages = set(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])
    sections = set(load_params(ROOT / "params.yaml")) - {"profiles", "deploy"}
    rows = stage_table.rows()
    assert len(rows) >= 16
    covered: set[str] = set()
    for stage, module, cli, component, dvc, params, test in rows:
        assert importlib.util.find_spec(module) is not None, module
        assert module.rsplit(".", 1)[1] == stage, (stage, module)
        assert cli == "–" or (cli == f"unireward {stage}" and stage in commands), (stage, cli)
        if component != "–":
            assert component == f"components/{stage}.py", (stage, component)
            tree = ast.parse((ROOT / component).read_text())
            assert stage in {f.name for f in tree.body if isinstance(f, ast.FunctionDef)}
        assert dvc == "–" or (dvc == stage and stage in dvc_stages), (stage, dvc)
        names = [n.strip() for n in params.replace("`", "").split(",")]
        assert names[0] == stage and set(names) <= sections, (stage, params)
        covered |= set(names)
        assert test == f"tests/test_{stage}.py" and (ROOT / test).is_file(), (stage, test)
    assert covered == sections, f"params sections not in the table: {sections - covered}"
    assert dvc_stages <= {r[0] for r in rows}, "a DVC stage missing from the table"
    stage_commands = commands - {"report"}  # report prints a comparison; it is no stage
    assert stage_commands == {r[0] for r in rows if r[2] != "–"}


def test_data_imports_nothing_above_it_and_each_module_imports_alone() -> None:
    """unireward.data is the bottom layer (with tasks, contract, config): no import, at module
    level or inside a function, reaches a layer above it, and each module imports on its own in
    a fresh interpreter (an import circle fails one of them)."""
    import subprocess
    import sys

    above = ("judge", "think", "eval", "policy", "serving", "registry", "model")
    data = ROOT / "src" / "unireward" / "data"
    modules = sorted(p.stem for p in data.glob("*.py") if p.stem != "__init__")
    for name in modules:
        tree = ast.parse((data / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                parts = node.module.split(".")
                assert not (parts[0] == "unireward" and parts[1:2] and parts[1] in above), (
                    f"data/{name}.py imports {node.module}"
                )
    for name in modules:
        done = subprocess.run(
            [sys.executable, "-c", f"import unireward.data.{name}"], capture_output=True, text=True
        )
        assert done.returncode == 0, (name, done.stderr[-500:])
