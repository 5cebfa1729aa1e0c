"""`unireward`: one subcommand per pipeline stage, each a few lines around the stage's `run()`.

    unireward --help
    unireward ingest --output-dir runs/ingest
    unireward validate --dataset runs/ingest --output-dir runs/validate
    unireward unified_sft --base-model models/base-tiny --dataset runs/validate \
        --output-dir runs/unified_sft
    unireward cold_start --judge runs/unified_sft --dataset runs/validate \
        --output-dir runs/cold_start
    unireward rejection_sample --judge runs/cold_start --dataset runs/validate \
        --output-dir runs/rejection_sample [--backend one|batched|vllm|vllm_offline]
    unireward rs_sft --judge runs/cold_start --samples runs/rejection_sample \
        --dataset runs/validate --output-dir runs/rs_sft
    unireward grpo --judge runs/rs_sft --samples runs/rejection_sample \
        --dataset runs/validate --output-dir runs/grpo
    unireward evaluate --model runs/unified_sft --dataset runs/validate --output-dir runs/eval \
        [--cot] [--samples runs/rejection_sample] [--backend generate|vllm]
        [--prompt-templates their_prompts.yaml]
    unireward evaluate --model runs/unified_sft --benchmark data/benchmarks --output-dir runs/bench
    unireward ablation --evaluation judge=runs/evaluate/judge \
        --evaluation think=runs/evaluate/think --evaluation rs=runs/evaluate/rs \
        --evaluation grpo=runs/evaluate/grpo --output-dir runs/ablation
    unireward register --model runs/unified_sft --metrics runs/eval/metrics.json \
        --output-dir runs/register
    unireward report --base runs/eval_base/metrics.json --judge runs/eval/metrics.json
    unireward serve --model-dir models/base-tiny    # UNIREWARD_JUDGE_API_KEY must be set
    unireward policy_sft --output-dir models/policy-tiny
    unireward build_pairs --policy models/policy-tiny --judge-model runs/unified_sft \
        --output-dir runs/build_pairs                   # or --judge oracle
    unireward dpo --policy models/policy-tiny --pairs runs/build_pairs --output-dir runs/dpo
    unireward evaluate_policy --before models/policy-tiny --after runs/dpo

Every stage subcommand takes `--params params.yaml --profile quick`: the stage's config is the
`params.yaml` section of the same name with the profile's overrides (`unireward.config`), and
the ad-hoc flags on top (`--max-steps` on the training stages, `--prompt-templates` on every
stage that builds judge prompts, `ingest --source/--format`, ...).
Each subcommand is one call of `_stage_run`: `_stage` (config, flags, input paths), then `_run`
(the stage's `run()`, its errors, its one-line summary); `evaluate` and `serve` call the two
themselves.
Stage modules are imported inside the subcommands so `--help` stays fast and torch-free.

Bad input (unknown profile, missing file, a config key that does not exist, an unknown task)
ends with a one-line `error: ...` and exit code 2, not a traceback.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from unireward.config import DEFAULT_PROFILE, load_stage_config
from unireward.eval.report import format_comparison
from unireward.tasks import TASKS, parse_task

T = TypeVar("T")
R = TypeVar("R")

app = typer.Typer(
    help="unireward: train, evaluate and register a unified multimodal reward judge.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

Params = Annotated[Path, typer.Option("--params", help="params.yaml with one section per stage.")]
Profile = Annotated[str, typer.Option("--profile", help="profile in params.yaml `profiles`.")]
OutputDir = Annotated[Path, typer.Option("--output-dir", "--output", help="Where to write.")]
Dataset = Annotated[Path, typer.Option("--dataset", help="Canonical dataset directory.")]
ModelDir = Annotated[Path, typer.Option("--model", "--model-dir", help="Checkpoint directory.")]


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"unireward {version('unireward')}")
        raise typer.Exit()


@app.callback()
def main(
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """unireward: train, evaluate and register a unified multimodal reward judge."""


# --------------------------------------------------------------------------- shared adapters


class UsageError(Exception):
    """Bad input detected by the CLI itself (reported like a config error)."""


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn the errors a user can fix into one line and exit code 2 (no traceback wall)."""
    try:
        yield
    except (FileNotFoundError, ValueError, UsageError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(code=2) from None


def _replace(config: Any, path: str, value: Any) -> Any:
    """`config` with the field at dotted `path` (e.g. "train.max_steps") set to `value`; every
    dataclass on the way re-validates in its __post_init__."""
    head, _, rest = path.partition(".")
    if not hasattr(config, head):
        raise ValueError(f"{type(config).__name__} has no field {head!r}")
    inner = _replace(getattr(config, head), rest, value) if rest else value
    return dataclasses.replace(config, **{head: inner})


def _stage(
    cls: type[T],
    stage: str,
    profile: str,
    params: Path,
    *,
    inputs: Iterable[Path | None] = (),
    overrides: Mapping[str, Any] | None = None,
) -> T:
    """What every stage subcommand does before it runs: the `params` section `stage` with the
    profile's overrides, the ad-hoc flags the user gave on top (`overrides`: a dotted field
    path -> value, None = not given; validated like params), and its input paths checked. Each
    failure is one `error: ...` line and exit 2."""
    with _user_errors():
        config = load_stage_config(cls, stage, profile, params)
        for path, value in (overrides or {}).items():
            if value is not None:
                config = _replace(config, path, value)
    _require(*inputs)
    return config


def _require(*paths: Path | None) -> None:
    with _user_errors():
        for path in paths:
            if path is not None and not path.exists():
                raise FileNotFoundError(f"{path} does not exist")


def _run(
    stage: str,
    run: Callable[[], R],
    extra: Callable[[R], Mapping[str, Any]] | None = None,
    failures: tuple[type[Exception], ...] = (),
) -> R:
    """Run a stage and print its one-line summary (`stage: {json}`, with `extra(result)`).
    A user error is `error: ...` and exit 2; one of the stage's own `failures` (e.g. a dataset
    that fails validation) is `<stage> failed: ...` and exit 1, and so is a full disk during a
    checkpoint save (`training.DiskFull`: it says which checkpoint the same command resumes
    from)."""
    from unireward.training import DiskFull

    with _user_errors():
        try:
            result = run()
        except (*failures, DiskFull) as err:
            typer.echo(f"{stage} failed: {err}", err=True)
            raise typer.Exit(code=1) from None
    _echo(stage, result, extra(result) if extra else None)
    return result


def _stage_run(
    stage: str,
    cls: type[T],
    run: Callable[[T], R],
    profile: str,
    params: Path,
    *,
    inputs: Iterable[Path | None] | Callable[[T], Iterable[Path | None]] = (),
    overrides: Mapping[str, Any] | None = None,
    extra: Callable[[R], Mapping[str, Any]] | None = None,
    failures: tuple[type[Exception], ...] = (),
) -> R:
    """A stage subcommand: its config (`_stage`; `inputs` may depend on it), then `run(config)`
    with its summary line (`_run`)."""
    config = _stage(cls, stage, profile, params, overrides=overrides)
    _require(*(inputs(config) if callable(inputs) else inputs))
    return _run(stage, lambda: run(config), extra, failures)


def _steps(result: Any) -> dict[str, Any]:
    """The summary extra of a trainer stage: its optimizer steps."""
    return {"steps": result.train.global_step}


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def summary(result: Any) -> dict[str, Any]:
    """The scalar fields of a stage result (paths as strings), for one-line reports."""
    fields = (
        result.__dict__
        if not dataclasses.is_dataclass(result)
        else {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
    )
    return {
        k: _jsonable(v)
        for k, v in fields.items()
        if isinstance(v, str | int | float | bool | Path) or v is None
    }


def _echo(stage: str, result: Any, extra: Mapping[str, Any] | None = None) -> None:
    typer.echo(f"{stage}: " + json.dumps({**summary(result), **(extra or {})}, sort_keys=True))


# --------------------------------------------------------------------------- stages


MaxSteps = Annotated[
    int | None, typer.Option("--max-steps", help="Overrides the stage's training steps.")
]
BaseModelDir = Annotated[Path, typer.Option("--base-model", help="Base checkpoint directory.")]
PromptFile = Annotated[
    str | None,
    typer.Option(
        "--prompt-templates",
        help="Prompt template file (overrides the config's `prompt_templates`; default: the "
        "model's own prompts.yaml, else the project's).",
    ),
]


@app.command("pretrain_base")
def pretrain_base(
    output_dir: OutputDir = Path("models/base-tiny"),
    max_steps: MaxSteps = None,
    params: Params = Path("params.yaml"),
    profile: Profile = DEFAULT_PROFILE,
) -> None:
    """Stage 0: train the tiny base VLM to see the shapes world (embedded default only)."""
    from unireward.model import pretrain_base as stage

    _stage_run(
        "pretrain_base",
        stage.PretrainBaseConfig,
        lambda config: stage.run(config, output_dir),
        profile,
        params,
        overrides={"train.max_steps": max_steps},
        extra=lambda r: {"steps": r.train.global_step, **r.perception},
    )


@app.command("ingest")
def ingest(
    output_dir: OutputDir = Path("runs/ingest"),
    source: Annotated[
        str | None,
        typer.Option("--source", help="Overrides ingest.source: a path, s3://, dvc://, shapes://"),
    ] = None,
    format: Annotated[
        str | None,
        typer.Option("--format", help="Overrides ingest.format: auto, canonical or a format name."),
    ] = None,
    params: Params = Path("params.yaml"),
    profile: Profile = DEFAULT_PROFILE,
) -> None:
    """Stage 1: read the configured source into a canonical dataset."""
    from unireward.data import ingest as stage
    from unireward.data.remote import RemoteError

    _stage_run(
        "ingest",
        stage.IngestConfig,
        lambda config: stage.run(config, output_dir),
        profile,
        params,
        overrides={"source": source, "format": format},
        failures=(RemoteError,),
    )


@app.command("validate")
def validate(
    dataset: Dataset = Path("runs/ingest"),
    output_dir: OutputDir = Path("runs/validate"),
    params: Params = Path("params.yaml"),
    profile: Profile = DEFAULT_PROFILE,
) -> None:
    """Stage 2: check a dataset; quarantine bad records; fail past the threshold (exit 1, the
    report in OUTPUT_DIR/report.html)."""
    from unireward.data import validate as stage

    _stage_run(
        "validate",
        stage.ValidateConfig,
        lambda config: stage.run(config, dataset, output_dir),
        profile,
        params,
        inputs=[dataset],
        failures=(stage.ValidationFailed,),
    )


@app.command("unified_sft")
def unified_sft(
    base_model: BaseModelDir = Path("models/base-tiny"),
    dataset: Dataset = Path("runs/validate"),
    output_dir: OutputDir = Path("runs/unified_sft"),
    max_steps: MaxSteps = None,
    prompt_templates: PromptFile = None,
    params: Params = Path("params.yaml"),
    profile: Profile = DEFAULT_PROFILE,
) -> None:
    """Stage 3: SFT the base VLM into the unified judge (4 tasks x pairwise/pointwise)."""
    from unireward.judge import unified_sft as stage

    _stage_run(
        "unified_sft",
        stage.UnifiedSftConfig,
        lambda config: stage.run(config, base_model, dataset, output_dir),
        profile,
        params,
        inputs=[base_model, dataset],
        overrides={"train.max_steps": max_steps, "prompt_templates": prompt_templates},
        extra=_steps,
    )


@app.command("cold_start")
def cold_start(
    judge: Annotated[
        Path, typer.Option("--judge", help="Unified judge checkpoint (unified_sft's output).")
    ] = Path("runs/unified_sft"),
    dataset: Dataset = Path("runs/validate"),
    output_dir: OutputDir = Path("runs/cold_start"),
    base: Annotated[
        Path, typer.Option("--base", help="Base model, the start with config `init: base`.")
    ] = Path("models/base-tiny"),
    max_steps: MaxSteps = None,
    prompt_templates: PromptFile = None,
    params: Params = Path("params.yaml"),
    profile: Profile = DEFAULT_PROFILE,
) -> None:
    """Stage 4: distil teacher CoT judgements, keep the correct ones, SFT the judge (or, with
    `init: base`, the base model) on them."""
    from unireward.think import cold_start as stage

    _stage_run(
        "cold_start",
        stage.ColdStartConfig,
        lambda config: stage.run(config, judge, dataset, output_dir, base_dir=base),
        profile,
        params,
        inputs=lambda config: [dataset, base if config.init == "base" else judge],
        overrides={"train.max_steps": max_steps, "prompt_templates": prompt_templates},
        extra=_steps,
        failures=(stage.TeacherFailures,),
    )


Judge = Annotated[
    Path, typer.Option("--judge", help="Judge checkpoint to start from (the previous stage's).")
]
Samples = Annotated[Path, typer.Option("--samples", help="rejection_sample's output directory.")]


@app.command("rejection_sample")
def rejection_sample(
    judge: Judge = Path("runs/cold_start"),
    dataset: Dataset = Path("runs/validate"),
    output_dir: OutputDir = Path("runs/rejection_sample"),
    backend: Annotated[
        str | None,
        typer.Option(
            "--backend", help="one | batched | vllm | vllm_offline (overrides the config)."
        ),
    ] = None,
    prompt_templates: PromptFile = None,
    params: Params = Path("params.yaml"),
    profile: Profile = DEFAULT_PROFILE,
) -> None:
    """Stage 5: k CoT judgements per pair; correct ones -> SFT data, missed pairs -> GRPO data."""
    from unireward.serving.client import JudgeUnavailable
    from unireward.think import rejection_sample as stage

    _stage_run(
        "rejection_sample",
        stage.RejectionSampleConfig,
        lambda config: stage.run(config, judge, dataset, output_dir),
        profile,
        params,
        inputs=[judge, dataset],
        overrides={"backend": backend, "prompt_templates": prompt_templates},
        failures=(JudgeUnavailable,),
    )


@app.command("rs_sft")
def rs_sft(
    judge: Judge = Path("runs/cold_start"),
    samples: Samples = Path("runs/rejection_sample"),
    dataset: Dataset = Path("runs/validate"),
    output_dir: OutputDir = Path("runs/rs_sft"),
    max_steps: MaxSteps = None,
    prompt_templates: PromptFile = None,
    params: Params = Path("params.yaml"),
    profile: Profile = DEFAULT_PROFILE,
) -> None:
    """Stage 6: SFT the judge on its own correct CoT judgements (rejection_sample's)."""
    from unireward.think import rs_sft as stage

    _stage_run(
        "rs_sft",
        stage.RsSftConfig,
        lambda config: stage.run(config, judge, samples, dataset, output_dir),
        profile,
        params,
        inputs=[judge, samples, dataset],
        overrides={"train.max_steps": max_steps, "prompt_templates": prompt_templates},
        extra=_steps,
    )


@app.command("grpo")
def grpo(
    judge: Judge = Path("runs/rs_sft"),
    samples: Samples = Path("runs/rejection_sample"),
    dataset: Dataset = Path("runs/validate"),
    output_dir: OutputDir = Path("runs/grpo"),
    max_steps: MaxSteps = None,
    prompt_templates: PromptFile = None,
    params: Params = Path("params.yaml"),
    profile: Profile = DEFAULT_PROFILE,
) -> None:
    """Stage 7: GRPO on the pairs the judge missed, reward = format + accuracy."""
    from unireward.think import grpo as stage

    _stage_run(
        "grpo",
        stage.GrpoConfig,
        lambda config: stage.run(config, judge, samples, dataset, output_dir),
        profile,
        params,
        inputs=[judge, samples, dataset],
        overrides={"max_steps": max_steps, "prompt_templates": prompt_templates},
    )


@app.command("evaluate")
def evaluate(
    model: ModelDir = Path("runs/unified_sft"),
    dataset: Dataset = Path("runs/validate"),
    output_dir: OutputDir = Path("runs/evaluate"),
    name: Annotated[str, typer.Option("--name", help="Label in plots and MLflow.")] = "judge",
    cot: Annotated[
        bool, typer.Option("--cot", help="Pairwise in CoT mode (overrides the config's `cot`).")
    ] = False,
    samples: Annotated[
        Path | None,
        typer.Option(
            "--samples", help="rejection_sample's output: also score its hard items (split hard)."
        ),
    ] = None,
    prompt_templates: PromptFile = None,
    benchmark: Annotated[
        Path | None,
        typer.Option(
            "--benchmark",
            help="A benchmark directory (GenAI-Bench, VideoGen-RewardBench, VL-RewardBench "
            "files): the papers' table instead of --dataset's splits.",
        ),
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option("--backend", help="generate | vllm (overrides the config's `backend`)."),
    ] = None,
    params: Params = Path("params.yaml"),
    profile: Profile = DEFAULT_PROFILE,
) -> None:
    """Stage 8: per task/mode accuracy, swap consistency and Spearman on held-out splits, or a
    public benchmark's table (--benchmark)."""
    from unireward.eval import evaluate as stage

    config = _stage(
        stage.EvaluateConfig,
        "evaluate",
        profile,
        params,
        inputs=[model, benchmark] if benchmark else [model, dataset, samples],
        overrides={
            "cot": True if cot else None,
            "backend": backend,
            "prompt_templates": prompt_templates,
        },
    )
    if benchmark is not None:
        from unireward.eval import benchmark as bench

        result = _run(
            "evaluate",
            lambda: bench.run(config, model, benchmark, output_dir, name=name),
            lambda r: {"benchmarks": list(r.table)},
        )
        typer.echo((result.output_dir / "benchmark.md").read_text())
        return
    _run(
        "evaluate",
        lambda: stage.run(config, model, dataset, output_dir, name=name, samples_dir=samples),
        lambda r: {k: _jsonable(v) for k, v in r.metrics.items() if k.endswith("_mean")},
    )


@app.command("ablation")
def ablation(
    evaluation: Annotated[
        list[str],
        typer.Option(
            "--evaluation",
            help="NAME=DIR of an `unireward evaluate` output (repeatable; order = columns).",
        ),
    ],
    output_dir: OutputDir = Path("runs/ablation"),
    params: Params = Path("params.yaml"),
    profile: Profile = DEFAULT_PROFILE,
) -> None:
    """The UnifiedReward-Think ablation: one table per split across the evaluated judges."""
    from unireward.eval import ablation as stage

    def run(config: stage.AblationConfig) -> stage.AblationResult:
        result = stage.run(config, stage.parse_evaluations(evaluation), output_dir)
        typer.echo(result.table_path.read_text())
        return result

    _stage_run("ablation", stage.AblationConfig, run, profile, params)


@app.command("register")
def register(
    model: ModelDir = Path("runs/unified_sft"),
    metrics: Annotated[
        Path, typer.Option("--metrics", help="metrics.json written by `unireward evaluate`.")
    ] = Path("runs/evaluate/metrics.json"),
    output_dir: OutputDir = Path("runs/register"),
    params: Params = Path("params.yaml"),
    profile: Profile = DEFAULT_PROFILE,
) -> None:
    """Stage 9: register the checkpoint in MLflow (alias challenger) and run the gate."""
    from unireward.registry import register as stage

    _stage_run(
        "register",
        stage.RegisterConfig,
        lambda config: stage.run(config, model, metrics, output_dir, tags={"profile": profile}),
        profile,
        params,
        inputs=[model, metrics],
        extra=lambda r: {"reasons": list(r.reasons)},
    )


@app.command("serve")
def serve(
    model: Annotated[
        Path | None,
        typer.Option("--model", "--model-dir", help="Serve this checkpoint, not the registry's."),
    ] = None,
    output_dir: OutputDir = Path("runs/serve"),
    params: Params = Path("params.yaml"),
    profile: Profile = DEFAULT_PROFILE,
) -> None:
    """Stage 10: serve the judge (model_name@alias, or --model-dir) with vLLM until Ctrl-C."""
    import signal

    from unireward.serving import serve as stage

    config = _stage(stage.ServeConfig, "serve", profile, params, inputs=[model])

    def _stop(signum, frame):  # SIGTERM (kill, Kubernetes) leaves the block like Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    try:
        with _user_errors(), stage.run(config, output_dir, model_dir=model) as server:
            # Not `_echo(server)`: that would print every str field, the API key among them.
            ready = {
                "base_url": server.base_url,
                "served_model_name": server.served_model_name,
                "model_dir": str(server.model_dir),
                "log": str(server.log_path),
                "api_key_env": config.api_key_env,
            }
            typer.echo("serve: " + json.dumps(ready, sort_keys=True) + " (Ctrl-C stops it)")
            while server.alive():
                server.process.wait(timeout=None)
            typer.echo(f"error: vLLM exited; last lines of {server.log_path}:", err=True)
            typer.echo(server.log_tail(), err=True)
            raise typer.Exit(code=1)
    except stage.ServerError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(code=1) from None
    except KeyboardInterrupt:
        typer.echo("serve: stopped")


@app.command("policy_sft")
def policy_sft(
    base_model: BaseModelDir = Path("models/base-tiny"),
    output_dir: OutputDir = Path("models/policy-tiny"),
    max_steps: MaxSteps = None,
    params: Params = Path("params.yaml"),
    profile: Profile = DEFAULT_PROFILE,
) -> None:
    """The embedded policy: the base taught to answer shapes-world questions imperfectly."""
    from unireward.policy import policy_sft as stage

    _stage_run(
        "policy_sft",
        stage.PolicySftConfig,
        lambda config: stage.run(config, base_model, output_dir),
        profile,
        params,
        inputs=[base_model],
        overrides={"train.max_steps": max_steps},
        extra=lambda r: {"steps": r.train.global_step, **r.accuracy},
    )


@app.command("gen_policy_sft")
def gen_policy_sft(
    output_dir: OutputDir = Path("models/gen-policy-tiny"),
    max_steps: MaxSteps = None,
    params: Params = Path("params.yaml"),
    profile: Profile = DEFAULT_PROFILE,
) -> None:
    """The embedded text-to-image policy: a diffusers pipeline taught to draw shapes-world
    captions, briefly (it draws the right scene only part of the time)."""
    from unireward.genpolicy import gen_policy_sft as stage

    _stage_run(
        "gen_policy_sft",
        stage.GenPolicySftConfig,
        lambda config: stage.run(config, output_dir),
        profile,
        params,
        overrides={"train.max_steps": max_steps},
        extra=lambda r: {"steps": r.global_step, **r.alignment},
    )


PolicyDir = Annotated[Path, typer.Option("--policy", help="Policy checkpoint directory.")]
JudgeModel = Annotated[
    Path | None, typer.Option("--judge-model", help="Judge checkpoint to serve (judge: served).")
]
JudgeUrl = Annotated[
    str | None, typer.Option("--judge-url", help="A running judge server's /v1 URL.")
]
Before = Annotated[Path, typer.Option("--before", help="Policy before DPO.")]
After = Annotated[Path, typer.Option("--after", help="Policy after DPO.")]


def _serve_config(profile: str, params: Path) -> Any:
    """The `serve` section: how the stages that need a judge serve the checkpoint they get."""
    from unireward.serving.serve import ServeConfig

    return _stage(ServeConfig, "serve", profile, params)


@app.command("build_pairs")
def build_pairs(
    policy: PolicyDir = Path("models/policy-tiny"),
    judge_model: JudgeModel = None,
    judge: Annotated[
        str | None, typer.Option("--judge", help="served | oracle (overrides the config).")
    ] = None,
    judge_url: JudgeUrl = None,
    output_dir: OutputDir = Path("runs/build_pairs"),
    prompt_templates: PromptFile = None,
    params: Params = Path("params.yaml"),
    profile: Profile = DEFAULT_PROFILE,
) -> None:
    """Stage 11: sample N answers per question, pair ranking + point sifting, DPO rows."""
    from unireward.policy import build_pairs as stage
    from unireward.serving.client import JudgeUnavailable

    _stage_run(
        "build_pairs",
        stage.BuildPairsConfig,
        lambda config: stage.run(
            config,
            policy,
            output_dir,
            judge_model,
            _serve_config(profile, params),
            tags={"profile": profile},
        ),
        profile,
        params,
        inputs=[policy, judge_model],
        overrides={"judge": judge, "judge_url": judge_url, "prompt_templates": prompt_templates},
        extra=lambda r: r.stats,
        failures=(JudgeUnavailable,),
    )


@app.command("dpo")
def dpo(
    policy: PolicyDir = Path("models/policy-tiny"),
    pairs: Annotated[Path, typer.Option("--pairs", help="build_pairs' output directory.")] = Path(
        "runs/build_pairs"
    ),
    output_dir: OutputDir = Path("runs/dpo"),
    max_steps: MaxSteps = None,
    params: Params = Path("params.yaml"),
    profile: Profile = DEFAULT_PROFILE,
) -> None:
    """Stage 12: TRL DPO on the policy with the preference pairs (resumable)."""
    from unireward.policy import dpo as stage

    _stage_run(
        "dpo",
        stage.DpoConfig,
        lambda config: stage.run(config, policy, pairs, output_dir, tags={"profile": profile}),
        profile,
        params,
        inputs=[policy, pairs],
        overrides={"train.max_steps": max_steps},
    )


GenPolicyDir = Annotated[
    Path, typer.Option("--policy", help="Text-to-image policy directory (a diffusers pipeline).")
]


@app.command("build_gen_pairs")
def build_gen_pairs(
    policy: GenPolicyDir = Path("models/gen-policy-tiny"),
    judge_model: JudgeModel = None,
    judge: Annotated[
        str | None,
        typer.Option("--judge", help="served | oracle | random (overrides the config)."),
    ] = None,
    judge_url: JudgeUrl = None,
    output_dir: OutputDir = Path("runs/build_gen_pairs"),
    prompt_templates: PromptFile = None,
    params: Params = Path("params.yaml"),
    profile: Profile = DEFAULT_PROFILE,
) -> None:
    """Draw N images per caption, pair ranking + point sifting: Diffusion-DPO pairs."""
    from unireward.genpolicy import build_gen_pairs as stage
    from unireward.serving.client import JudgeUnavailable

    _stage_run(
        "build_gen_pairs",
        stage.BuildGenPairsConfig,
        lambda config: stage.run(
            config, policy, output_dir, judge_model, _serve_config(profile, params)
        ),
        profile,
        params,
        inputs=[policy, judge_model],
        overrides={"judge": judge, "judge_url": judge_url, "prompt_templates": prompt_templates},
        extra=lambda r: r.stats,
        failures=(JudgeUnavailable,),
    )


@app.command("gen_dpo")
def gen_dpo(
    policy: GenPolicyDir = Path("models/gen-policy-tiny"),
    pairs: Annotated[
        Path, typer.Option("--pairs", help="build_gen_pairs' output directory.")
    ] = Path("runs/build_gen_pairs"),
    output_dir: OutputDir = Path("runs/gen_dpo"),
    max_steps: MaxSteps = None,
    params: Params = Path("params.yaml"),
    profile: Profile = DEFAULT_PROFILE,
) -> None:
    """Diffusion-DPO of the text-to-image policy on the preference pairs (resumable)."""
    from unireward.genpolicy import gen_dpo as stage

    _stage_run(
        "gen_dpo",
        stage.GenDpoConfig,
        lambda config: stage.run(config, policy, pairs, output_dir),
        profile,
        params,
        inputs=[policy, pairs],
        overrides={"train.max_steps": max_steps},
        extra=lambda r: {"trained": r.trained, "pairs": r.pairs, "steps": r.global_step},
    )


@app.command("evaluate_gen_policy")
def evaluate_gen_policy(
    before: Before = Path("models/gen-policy-tiny"),
    after: After = Path("runs/gen_dpo"),
    judge_model: Annotated[
        Path | None,
        typer.Option("--judge-model", help="Judge checkpoint whose scores to add (optional)."),
    ] = None,
    output_dir: OutputDir = Path("runs/evaluate_gen_policy"),
    params: Params = Path("params.yaml"),
    profile: Profile = DEFAULT_PROFILE,
) -> None:
    """Caption alignment before / after DPO on held-out captions (seen, unseen)."""
    from unireward.genpolicy import evaluate_gen_policy as stage

    _stage_run(
        "evaluate_gen_policy",
        stage.EvaluateGenPolicyConfig,
        lambda config: stage.run(
            config, before, after, output_dir, judge_model, _serve_config(profile, params)
        ),
        profile,
        params,
        inputs=[before, after, judge_model],
        extra=lambda r: {k: round(v, 3) for k, v in r.metrics.items() if k.endswith("/all")},
    )


@app.command("evaluate_policy")
def evaluate_policy(
    before: Before = Path("models/policy-tiny"),
    after: After = Path("runs/dpo"),
    output_dir: OutputDir = Path("runs/evaluate_policy"),
    params: Params = Path("params.yaml"),
    profile: Profile = DEFAULT_PROFILE,
) -> None:
    """Stage 13: both policies on held-out shapes-world questions, accuracy per attribute."""
    from unireward.policy import evaluate_policy as stage

    def run(config: stage.EvaluatePolicyConfig) -> stage.EvaluatePolicyResult:
        result = stage.run(config, before, after, output_dir, tags={"profile": profile})
        typer.echo(stage.format_table(result.metrics))
        return result

    _stage_run(
        "evaluate_policy", stage.EvaluatePolicyConfig, run, profile, params, inputs=[before, after]
    )


# --------------------------------------------------------------------------- report


def _read_metrics(path: Path) -> dict[str, float]:
    from unireward.registry.register import load_metrics

    return load_metrics(path)


@app.command("report")
def report(
    base: Annotated[Path, typer.Option("--base", help="metrics.json of the base model.")],
    judge: Annotated[Path, typer.Option("--judge", help="metrics.json of the trained judge.")],
    task: Annotated[
        list[str] | None, typer.Option("--task", help="Only this task (repeatable).")
    ] = None,
    primary: Annotated[
        str, typer.Option("--primary-split", help="Split of the unprefixed metric keys.")
    ] = "eval_seen",
) -> None:
    """Print base vs judge per task: pairwise diff/tau, swap consistency, pointwise Spearman."""
    with _user_errors():
        tasks = tuple(str(parse_task(t).value) for t in task) if task else tuple(TASKS)
        table = format_comparison(_read_metrics(base), _read_metrics(judge), tasks, primary)
    typer.echo(table)


if __name__ == "__main__":
    app()
