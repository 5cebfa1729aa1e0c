"""docs/architecture.md's stage table, read once: the stages and what each has (CLI subcommand,
Kubeflow component, DVC stage, ...). tests/test_architecture.py checks the table against the
tree; the other tests take their stage lists from it, so a stage is listed in one place.

`pythonpath = ["tests"]` makes it importable as `stage_table`.
"""

from __future__ import annotations

from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"
NONE = "–"  # the table's mark for "this stage has none"


def rows() -> list[list[str]]:
    """One row a stage, in the table's order: stage, module, CLI, component, DVC, params, test."""
    text = DOC.read_text()
    table = text.split("<!-- stage-table:begin -->")[1].split("<!-- stage-table:end -->")[0]
    lines = [line for line in table.strip().splitlines() if line.startswith("| `")]
    return [[cell.strip().strip("`") for cell in line.strip("|").split("|")] for line in lines]


# The stages with a `unireward <stage>` subcommand, and those with a components/<stage>.py.
CLI_STAGES = tuple(row[0] for row in rows() if row[2] != NONE)
COMPONENT_STAGES = tuple(row[0] for row in rows() if row[3] != NONE)
