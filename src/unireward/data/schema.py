"""The canonical record: one row per judgement item, the schema every stage reads and writes.

A dataset is a directory `root/` holding `records.parquet` and the media files it references
(`root/media/...`). Media paths are relative to `root` and must stay inside it.

Row layout (see shared/DESIGN.md, "Data formats to ingest"):

| column | type | meaning |
|---|---|---|
| id | str | unique within the dataset |
| task | str | a `Task` value |
| mode | str | a `Mode` value |
| prompt | str | caption (generation) or question (understanding) |
| media | list[list[str]] | visual items, each a list of frame paths; an image is one frame |
| responses | list[str] | candidate answers (understanding tasks); empty for generation |
| label | str or None | pairwise: the exact contract answer string the judge should give |
| score | float or None | pointwise: ground-truth score on the task's native scale |
| cot | str or None | optional chain-of-thought target (`<think>..</think><answer>..`) |
| split | str | train / eval_seen / eval_unseen / ... |
| source | str | where the row came from (URI or generator name) |
| meta | str | JSON object: ground truth and provenance, free-form |

Shapes per (task, mode):
- generation, pairwise: media = [item1, item2], responses = [], label set.
- generation, pointwise: media = [item], responses = [], score set.
- understanding, pairwise: media = [item], responses = [answer1, answer2], label set.
- understanding, pointwise: media = [item], responses = [answer], score set.
An image item is `[path]`; a video item is `[frame_0, ..., frame_{F-1}]` in temporal order.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

RECORDS_FILE = "records.parquet"

SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("task", pa.string(), nullable=False),
        pa.field("mode", pa.string(), nullable=False),
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("media", pa.list_(pa.list_(pa.string())), nullable=False),
        pa.field("responses", pa.list_(pa.string()), nullable=False),
        pa.field("label", pa.string(), nullable=True),
        pa.field("score", pa.float64(), nullable=True),
        pa.field("cot", pa.string(), nullable=True),
        pa.field("split", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("meta", pa.string(), nullable=False),
    ]
)


@dataclass(frozen=True)
class Record:
    id: str
    task: str
    mode: str
    prompt: str
    media: list[list[str]]
    responses: list[str] = field(default_factory=list)
    label: str | None = None
    score: float | None = None
    cot: str | None = None
    split: str = "train"
    source: str = ""
    meta: str = "{}"

    @property
    def meta_dict(self) -> dict[str, Any]:
        return json.loads(self.meta)


def write_records(records: list[Record], root: Path) -> Path:
    """Write records to `root/records.parquet` with the canonical schema."""
    root.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist([asdict(r) for r in records], schema=SCHEMA)
    path = root / RECORDS_FILE
    pq.write_table(table, path)
    return path


def read_records(root: Path) -> list[Record]:
    """Read `root/records.parquet`; a file whose columns differ from the schema is an error."""
    path = root / RECORDS_FILE
    if not path.exists():
        raise FileNotFoundError(f"no {RECORDS_FILE} in {root}: is this a canonical dataset?")
    table = pq.read_table(path)
    if set(table.column_names) != set(SCHEMA.names):
        missing = sorted(set(SCHEMA.names) - set(table.column_names))
        extra = sorted(set(table.column_names) - set(SCHEMA.names))
        raise ValueError(f"{path}: schema mismatch; missing columns {missing}, unexpected {extra}")
    return [Record(**row) for row in table.select(SCHEMA.names).to_pylist()]
