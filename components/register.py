"""Kubeflow component of stage 9, `register`: MLflow model version, alias challenger, gate.

python -m pipelines.compile --profile quick --output build/unireward-quick.yaml
"""

from kfp import dsl
from kfp.dsl import Artifact, Input, Markdown, Model, Output

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def register(
    config: dict,
    model: Input[Model],
    evaluation: Input[Artifact],
    registration: Output[Artifact],
    description: Output[Markdown],
    tags: dict = {},  # noqa: B006 - KFP parameter default, never mutated
    profile: str = "",
):
    """`registration` is a directory holding registration.json (version, aliases, reasons) and
    description.md, the model version's description (`description`, for the UI). `profile`
    (the params profile the run was compiled with) joins the version's tags."""
    import shutil
    from pathlib import Path

    from unireward.cli import summary
    from unireward.config import from_dict
    from unireward.registry import register as stage

    cfg = from_dict(stage.RegisterConfig, config, where="register")
    result = stage.run(
        cfg,
        Path(model.path),
        Path(evaluation.path) / "metrics.json",
        Path(registration.path),
        tags={**tags, **({"profile": profile} if profile else {})},
    )
    shutil.copyfile(Path(registration.path) / stage.DESCRIPTION_FILE, description.path)
    registration.metadata.update(summary(result))
    registration.metadata["reasons"] = list(result.reasons)
