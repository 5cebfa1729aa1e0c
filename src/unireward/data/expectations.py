"""The great-expectations suites of `validate`: one suite per table, run in an ephemeral context.

    unireward validate --dataset runs/ingest --output-dir runs/validate

`validate` builds three pandas tables from a canonical dataset and hands them to GX 1.x:

- `records` (one row per record that passed the structural checks): task / mode vocabulary,
  label vocabulary per task, labels and scores present, score range per task (on the unit
  scale), frames per item, duplicate ids, duplicate media within a pair, and (table level) the
  balance of which position pairwise labels prefer;
- `media` (one row per distinct safe media path): file size, pixel count (decompression
  bombs), decodable;
- `eval_media` (one row per media file of a non-train record): train/eval leakage by media
  content (sha256), and by prompt when `validate.prompt_leakage` is on.

Each expectation carries `meta={"check": NAME}`: a failing row-level expectation quarantines
the rows GX lists (`unexpected_index_list`, the table's index is the row / media number) under
that check; `validate.ROW_CHECKS` turns them into reasons. Table-level expectations (position
balance) fail the run instead. GX decides which rows fail; this module only says what to expect.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from unireward.tasks import PAIR_ANSWERS, TIE_ANSWERS, Mode, Task

TABLES = ("records", "media", "eval_media")


@dataclass
class SuiteOutcome:
    """What the suites found: row numbers per check and per table, and table-level results."""

    rows: dict[str, dict[str, set[int]]] = field(default_factory=dict)  # table -> check -> rows
    table_checks: list[dict[str, Any]] = field(default_factory=list)  # table-level expectations
    evaluated: int = 0

    def flagged(self, table: str, check: str) -> set[int]:
        return self.rows.get(table, {}).get(check, set())

    @property
    def failed_table_checks(self) -> list[dict[str, Any]]:
        return [c for c in self.table_checks if not c["success"]]


def task_labels() -> list[str]:
    """Every valid "task|label" pair (ties only for generation tasks)."""
    pairs = [f"{t.value}|{a}" for t, answers in PAIR_ANSWERS.items() for a in answers]
    return pairs + [f"{t.value}|{a}" for t, a in TIE_ANSWERS.items()]


def records_suite(config: Any, n_pairs: int) -> list[Any]:
    import great_expectations as gx

    e = gx.expectations
    pairwise, pointwise = 'mode=="pairwise"', 'mode=="pointwise"'
    suite = [
        e.ExpectColumnValuesToBeInSet(
            column="task", value_set=[t.value for t in Task], meta={"check": "task"}
        ),
        e.ExpectColumnValuesToBeInSet(
            column="mode", value_set=[m.value for m in Mode], meta={"check": "mode"}
        ),
        e.ExpectColumnValuesToNotBeNull(
            column="label",
            row_condition=pairwise,
            condition_parser="pandas",
            meta={"check": "label"},
        ),
        e.ExpectColumnValuesToBeInSet(
            column="task_label", value_set=task_labels(), meta={"check": "label"}
        ),
        e.ExpectColumnValuesToNotBeNull(
            column="score",
            row_condition=pointwise,
            condition_parser="pandas",
            meta={"check": "score"},
        ),
        # score on the unit scale of its task: 0 = the task's minimum, 1 = its maximum
        e.ExpectColumnValuesToBeBetween(
            column="score_unit", min_value=0.0, max_value=1.0, meta={"check": "score"}
        ),
        e.ExpectColumnValuesToBeInSet(
            column="image_frames", value_set=[1], meta={"check": "frames"}
        ),
        e.ExpectColumnValuesToBeBetween(
            column="video_frames",
            min_value=config.min_frames,
            max_value=config.max_frames,
            meta={"check": "frames"},
        ),
        e.ExpectColumnValuesToBeUnique(column="id", meta={"check": "duplicate id"}),
        e.ExpectSelectColumnValuesToBeUniqueWithinRecord(
            column_list=["item1_hash", "item2_hash"], meta={"check": "duplicate media"}
        ),
    ]
    if n_pairs >= config.min_pairs_for_balance:
        half = config.max_position_imbalance
        suite.append(
            e.ExpectColumnMeanToBeBetween(
                column="preferred_second",
                min_value=0.5 - half,
                max_value=0.5 + half,
                meta={"check": "position balance"},
            )
        )
    return suite


def media_suite(config: Any) -> list[Any]:
    import great_expectations as gx

    e = gx.expectations
    suite = [
        e.ExpectColumnValuesToBeBetween(
            column="bytes", min_value=1, max_value=config.max_file_bytes, meta={"check": "bytes"}
        ),
        e.ExpectColumnValuesToBeBetween(
            column="pixels",
            min_value=1,
            max_value=config.max_image_pixels,
            meta={"check": "pixels"},
        ),
    ]
    if config.check_media:
        suite.append(
            e.ExpectColumnValuesToBeInSet(
                column="decodable", value_set=[True], meta={"check": "decodable"}
            )
        )
    return suite


def eval_media_suite(train_hashes: list[str], train_prompts: list[str], config: Any) -> list[Any]:
    import great_expectations as gx

    e = gx.expectations
    suite = [
        e.ExpectColumnValuesToNotBeInSet(
            column="sha256", value_set=train_hashes, meta={"check": "leakage media"}
        )
    ]
    if config.prompt_leakage:
        suite.append(
            e.ExpectColumnValuesToNotBeInSet(
                column="prompt_key", value_set=train_prompts, meta={"check": "leakage prompt"}
            )
        )
    return suite


def _context() -> Any:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # GX logs a line per expectation at INFO and draws progress bars: noise in stage logs.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def run_suites(frames: dict[str, Any], suites: dict[str, list[Any]]) -> SuiteOutcome:
    """Validate each pandas table `frames[name]` against `suites[name]` (see module doc)."""
    import great_expectations as gx

    context = _context()
    source = context.data_sources.add_pandas("unireward")
    outcome = SuiteOutcome()
    for name, expectations in suites.items():
        df = frames[name]
        if df.empty or not expectations:
            continue
        batch_def = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
        suite = context.suites.add(gx.ExpectationSuite(name=name))
        for expectation in expectations:
            suite.add_expectation(expectation)
        batch = batch_def.get_batch(batch_parameters={"dataframe": df})
        result = batch.validate(suite, result_format={"result_format": "COMPLETE"})
        per_check: dict[str, set[int]] = {}
        for res in result.results:
            outcome.evaluated += 1
            config = res.expectation_config
            check = config.meta["check"]
            if res.exception_info and res.exception_info.get("raised_exception"):
                raise RuntimeError(
                    f"great-expectations could not evaluate {config.type} on table {name}: "
                    f"{res.exception_info.get('exception_message')}"
                )
            if "unexpected_count" not in res.result:  # table-level: no rows to quarantine
                outcome.table_checks.append(
                    {
                        "table": name,
                        "check": check,
                        "expectation": config.type,
                        "success": bool(res.success),
                        "observed": res.result.get("observed_value"),
                        "kwargs": {
                            k: v for k, v in config.kwargs.items() if k not in ("batch_id",)
                        },
                    }
                )
                continue
            index = res.result.get("unexpected_index_list") or []
            per_check.setdefault(check, set()).update(int(i) for i in index)
        outcome.rows[name] = per_check
    return outcome
