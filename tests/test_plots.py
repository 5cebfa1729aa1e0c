"""unireward.plots: the figures each stage logs, from the numbers the stages write (pure), and
the HTML page the Kubeflow components show. Which artifacts each stage logs is tested with the
stage, on a real local MLflow store (tests/mlflow_store.py)."""

from __future__ import annotations

import subprocess
import sys

from unireward import plots

HISTORY = [
    {"step": 1, "loss": 2.0, "learning_rate": 1e-3},
    {"step": 2, "loss": 1.5, "reward": 0.5, "rewards/format_reward/mean": 0.25},
    {"step": 2, "train_runtime": 3.1, "train_loss": 1.7},  # the Trainer's summary entry
]
METRICS = {
    "image_generation/pairwise_diff": 0.75,
    "eval_unseen/image_generation/pairwise_diff": 0.5,
    "image_generation/by/colour/pairwise_tau": 0.8,
    "image_generation/by/shape/pairwise_tau": 0.6,
    "eval_unseen/image_generation/by/colour/pairwise_tau": 0.4,
    "video_understanding/by/direction/pairwise_tau": float("nan"),
    "pairwise_diff_mean": 0.75,
}


def test_import_pulls_in_neither_matplotlib_nor_mlflow():
    code = "import sys, unireward.plots; assert not {'matplotlib', 'mlflow'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_training_curves_have_a_panel_per_logged_group_and_none_without_a_log():
    fig = plots.training_curves(HISTORY, "grpo")
    assert [ax.get_title() for ax in fig.axes] == ["loss", "reward", "learning rate"]
    loss = fig.axes[0].lines[0]
    assert list(loss.get_xdata()) == [1, 2] and list(loss.get_ydata()) == [2.0, 1.5]
    plots.close({"f": fig})
    assert plots.training_curves([], "skipped") is None
    assert plots.training_curves([{"step": 1, "loss": float("nan")}], "x") is None


def test_attribute_accuracy_reads_both_splits_and_skips_other_keys():
    table = plots.attribute_accuracy(METRICS, "eval_seen")
    assert table["image_generation"] == {
        "colour": {"eval_seen": 0.8, "eval_unseen": 0.4},
        "shape": {"eval_seen": 0.6},
    }
    fig = plots.accuracy_by_attribute(METRICS, "eval_seen", "judge")
    assert [ax.get_title() for ax in fig.axes] == ["image_generation", "video_understanding"]
    plots.close({"f": fig})
    assert plots.accuracy_by_attribute({"pairwise_diff_mean": 0.5}, "eval_seen", "x") is None


def test_accuracy_by_task_has_a_panel_per_split():
    fig = plots.accuracy_by_task(METRICS, "eval_seen", "judge")
    assert [ax.get_title() for ax in fig.axes] == ["eval_seen", "eval_unseen"]
    plots.close({"f": fig})


def test_pair_statistics_and_policy_accuracy_draw_what_the_stages_write():
    stats = {"prompts": 10, "kept": 4, "dropped_single_answer": 6, "quarantined": 0}
    stats |= {"pairs_judged": 20, "pair_ties": 2, "pair_unparseable": 1, "swap_disagreements": 3}
    fig = plots.pair_statistics(stats, {"colour": 6, "shape": 4}, {"colour": 4})
    prompts, judge, per_attribute = fig.axes
    assert [t.get_text() for t in prompts.get_yticklabels()] == [
        "kept",
        "single_answer",
        "quarantined",
    ]
    assert "flipped (swap)" in [t.get_text() for t in judge.get_yticklabels()]
    assert [round(b.get_height()) for b in per_attribute.patches] == [6, 4, 4, 0]
    metrics = {f"{s}/eval_seen/{a}": v for s, v in (("before", 0.3), ("after", 0.5)) for a in "xy"}
    policy = plots.policy_accuracy(metrics)
    assert [b.get_height() for b in policy.axes[0].patches] == [0.3, 0.3, 0.5, 0.5]
    plots.close({"a": fig, "b": policy})


def test_html_page_inlines_figures_and_escapes_text():
    fig = plots.training_curves(HISTORY, "t")
    table = plots.samples_table(
        [
            {
                "split": "eval_seen",
                "question": "<b>What colour?</b>",
                "truth": "red",
                "before": "blue",
                "after": "red",
                "before_ok": False,
                "after_ok": True,
            }
        ]
    )
    page = plots.html_page("dpo & co", {"curves": fig, "absent": None}, body=table, notes="a<b")
    plots.close({"f": fig})
    assert page.count('src="data:image/png;base64,') == 1 and "absent" not in page
    assert "&lt;b&gt;What colour?" in page and "<b>What" not in page
    assert "dpo &amp; co" in page and "a&lt;b" in page
    assert "blue &#10007;" in page and "red &#10003;" in page
    assert "nothing was trained" in plots.training_report([], "rs_sft")
