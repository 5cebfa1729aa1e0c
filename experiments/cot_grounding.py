"""Is a CoT judge's reasoning grounded in its input? Reads `evaluate --cot` predictions.

    python experiments/cot_grounding.py runs/think/eval_think_cot/predictions.parquet \
        --dataset runs/validate

Per split and task, over pairwise items (the order evaluate presented them in):
- `same_both_orders`: the CoT text is identical when the pair is shown swapped (a judge that
  reads its input cannot write the same thing about "Image 1" both times);
- `prompt_copied`: the reasoning quotes the prompt exactly -- "The caption asks for <caption>."
  (generation) or "Answer k says <answer k>." for both answers (understanding);
- `perception_right`: the "I see ..." observation matches the ground truth -- for generation
  pairs both items' full descriptions, for understanding the true answer (the probe's measure);
- `first_preferred` / `label_first`: how often the verdict / the label is item 1: a judge whose
  verdict ignores the content scores `label_first` (or 1 - it) whatever it "reasons".

The phrasing checked is the programmatic teacher's perception-first style
(unireward.data.teacher); a judge distilled from another teacher needs other patterns.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from unireward.data.schema import Record, read_records
from unireward.data.shapes import Scene, describe
from unireward.eval.evaluate import EvaluateConfig, presented_order, select


def grounding(record: Record, original: Record, text: str) -> tuple[bool, bool]:
    """(prompt_copied, perception_right) of one CoT text about `record` as presented."""
    meta = record.meta_dict
    if record.task.endswith("understanding"):
        copied = all(
            f"Answer {k + 1} says {resp}." in text for k, resp in enumerate(record.responses)
        )
        return copied, text.startswith(f"<think>I see {meta['correct_answer']}.")
    # meta describes the items in the original order; evaluate may have swapped the media
    items = meta["items"] if record.media == original.media else meta["items"][::-1]
    noun = "Video" if "video" in record.task else "Image"
    seen = all(
        f"{noun} {k + 1}: I see {describe(Scene(**item))}," in text for k, item in enumerate(items)
    )
    return f"The caption asks for {record.prompt}." in text, seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("predictions", type=Path)
    parser.add_argument("--dataset", type=Path, required=True)
    args = parser.parse_args()
    records = read_records(args.dataset)
    originals = {r.id: r for r in records}
    config = EvaluateConfig()  # the default swap seed: the order evaluate presented
    shown = {r.id: r for r in presented_order(select(records, config), config.swap_seed)}
    preds = pd.read_parquet(args.predictions)
    rows = []
    for _, row in preds[preds["mode"] == "pairwise"].iterrows():
        record = shown[row["id"]]
        copied, seen = grounding(record, originals[record.id], row["text"])
        rows.append(
            {
                "split": row["split"],
                "task": row["task"],
                "same_both_orders": row["text"] == row["text_swapped"],
                "prompt_copied": copied,
                "perception_right": seen,
                "first_preferred": row["pred"] == 1,
                "label_first": row["label"] == 1,
            }
        )
    table = pd.DataFrame(rows).groupby(["split", "task"]).mean().round(2)
    print(table.to_string())


if __name__ == "__main__":
    main()
