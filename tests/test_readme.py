"""The README is the user's guide and every command in it works: subcommands and their flags
exist, make targets exist, the Python snippets import what exists, the YAML snippets load into
the stage configs, the links resolve, and the results block is generated from the recorded
runs (not typed). The commands' behaviour is run by the tests named beside each check.

    .venv/bin/pytest tests/test_readme.py -q
"""

from __future__ import annotations

import ast
import importlib
import re
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def _commands() -> list[list[str]]:
    """Each shell command of the README's bash blocks, continuation lines joined, comments cut."""
    out = []
    for block in _blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.commenters = "#"
            words: list[str] = []
            for token in lexer:
                if token in ("&&", ";", "|", "||", "(", ")", "$"):
                    out.append(words) if words else None
                    words = []
                else:
                    words.append(token)
            if words:
                out.append(words)
    return out


def test_the_readme_is_a_guide_not_a_notebook() -> None:
    assert len(README.splitlines()) < 300
    first_screen = "\n".join(README.splitlines()[:60])
    for must in ("make pipeline-run", "make test", "What the main job gives you"):
        assert must in first_screen


def test_every_unireward_command_and_flag_exists() -> None:
    import typer

    from unireward.cli import app

    group = typer.main.get_command(app)
    seen = 0
    for argv in _commands():
        words = [w for w in argv if "=" not in w or w.startswith("-")]  # drop VAR=value
        if not words or not words[0].endswith("unireward"):
            continue
        seen += 1
        if words[1:2] in (["--help"], ["--version"]):
            continue
        command = group.commands[words[1]]  # KeyError = a subcommand that does not exist
        flags = {opt for p in command.params for opt in p.opts}
        used = {w for w in words[2:] if w.startswith("--")}
        assert used <= flags, f"{' '.join(argv)}: unknown {used - flags}"
    assert seen >= 6


def test_every_make_target_exists() -> None:
    targets = set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), flags=re.M))
    used = {argv[1] for argv in _commands() if argv[0] == "make" and len(argv) > 1}
    used |= set(re.findall(r"`make ([a-z][\w-]*)", README))
    assert used and used <= targets, used - targets


def test_python_snippets_parse_and_import_what_exists() -> None:
    blocks = _blocks("python")
    assert len(blocks) >= 3
    for block in blocks:
        tree = ast.parse(block)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name), f"{node.module}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    importlib.import_module(alias.name)


def test_yaml_snippets_load_into_the_stage_configs(tmp_path: Path) -> None:
    """The ingest example is a valid ingest section; the `extends` example a valid profile file
    (run from the project root, as the README's commands are)."""
    from unireward.config import from_dict, load_stage_config
    from unireward.data.ingest import IngestConfig
    from unireward.judge.unified_sft import UnifiedSftConfig

    ingest, own = (yaml.safe_load(b) for b in _blocks("yaml"))
    assert from_dict(IngestConfig, ingest["ingest"]).source.startswith("s3://")
    own["extends"] = str(ROOT / own["extends"])
    path = tmp_path / "my.yaml"
    path.write_text(yaml.safe_dump(own))
    config = load_stage_config(UnifiedSftConfig, "unified_sft", "mine", path)
    assert config.train.max_steps == 20000


@pytest.mark.parametrize("link", sorted(set(re.findall(r"\]\(([^)#]+)\)", README))))
def test_links_resolve(link: str) -> None:
    assert (ROOT / link).exists(), link


def test_the_results_tables_are_generated_from_the_recorded_runs(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))  # pipelines/ is a top-level package of the repo
    from pipelines import results

    assert results.main(["--check"]) == 0, "run `python -m pipelines.results`"


def test_the_judges_accuracy_by_difference_is_a_table_of_its_own_metrics(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    from pipelines import results

    metrics = {  # evaluate's keys: the seen split's carry no prefix
        "video_generation/by/motion/pairwise_tau": 0.25,
        "eval_unseen/video_generation/by/motion/pairwise_tau": 0.5,
        "image_generation/by/shape/pairwise_tau": 1.0,
        "image_generation/pairwise_diff": 0.9,  # not a breakdown
        "hard/image_generation/by/shape/pairwise_tau": 0.0,  # not a held-out split
    }
    by = results.by_difference(metrics)
    assert sorted(by) == [
        "eval_seen/image_generation/by/shape/pairwise_tau",
        "eval_seen/video_generation/by/motion/pairwise_tau",
        "eval_unseen/video_generation/by/motion/pairwise_tau",
    ]
    table = results.difference_table(by).splitlines()
    assert table[2:] == [
        "| image_generation | shape | 1.00 | – |",
        "| video_generation | motion | 0.25 | 0.50 |",
    ]
