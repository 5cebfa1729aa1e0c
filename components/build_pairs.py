"""Kubeflow component of stage 11, `build_pairs` (with stage 10, `serve`): the judge served by
vLLM for the duration of the task, N policy answers per question, pair ranking + point sifting.

python -m pipelines.compile --profile quick --output build/unireward-quick.yaml

Locally the task starts and stops the vLLM server itself (`serve.run` on the `judge` artifact,
`.venv-serve`); on a cluster `judge_url` in the config points at the judge Deployment
(infra/base/judge-serving.yaml, SERVE_IMAGE) and no server is started here: this task samples
the policy (transformers), so it runs in the training image.
"""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output

from components.images import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def build_pairs(
    config: dict,
    serve_config: dict,
    policy: Input[Model],
    judge: Input[Model],
    think_judge: Input[Model],
    rs_judge: Input[Model],
    grpo_judge: Input[Model],
    judge_evaluation: Input[Artifact],
    think_evaluation: Input[Artifact],
    rs_evaluation: Input[Artifact],
    grpo_evaluation: Input[Artifact],
    pairs: Output[Dataset],
    metrics: Output[Metrics],
    report: Output[HTML],
):
    """`pairs` is a directory: pairs.parquet (TRL preference rows), quarantine.parquet,
    stats.json, report.html, judge_choice.json (which of the four judges built them, and why:
    `judge_from`); `metrics` carries the pair statistics and `report` shows them."""
    import shutil
    from pathlib import Path

    from unireward.config import from_dict
    from unireward.policy import build_pairs as stage
    from unireward.serving.serve import ServeConfig

    cfg = from_dict(stage.BuildPairsConfig, config, where="build_pairs")
    serve_cfg = from_dict(ServeConfig, serve_config, where="serve")
    models = {"unified": judge, "think": think_judge, "rs": rs_judge, "grpo": grpo_judge}
    evaluations = {
        "unified": judge_evaluation,
        "think": think_evaluation,
        "rs": rs_evaluation,
        "grpo": grpo_evaluation,
    }
    out = Path(pairs.path)
    result, choice = stage.run_with_best_judge(
        cfg,
        Path(policy.path),
        out,
        {name: Path(m.path) for name, m in models.items()},
        {name: Path(e.path) for name, e in evaluations.items()},
        serve_cfg,
    )
    shutil.copyfile(out / stage.REPORT, report.path)
    for key, value in sorted(result.stats.items()):
        metrics.log_metric(key, float(value))
    pairs.metadata.update({"kept": result.kept, "judge": cfg.judge, "judge_from": choice["judge"]})
