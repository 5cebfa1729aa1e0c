"""Kubeflow component of stage 1, `ingest`: a raw source into a canonical dataset.

python -m pipelines.compile --profile quick --output build/unireward-quick.yaml
"""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def ingest(config: dict, dataset: Output[Dataset]):
    """`dataset` is a directory: records.parquet, media/ and lineage.json.

    `config` is the params.yaml `ingest` section: `source` may be s3://... (credentials and
    endpoint from the pod's AWS variables) or dvc://path with `dvc_repo` and `dvc_rev` (the DVC
    rev is a pipeline parameter through this dict). The lineage's scalars (source, resolved
    DVC rev, content hash, rows in / out) become the artifact's metadata.
    """
    from pathlib import Path

    from unireward.cli import summary
    from unireward.config import from_dict
    from unireward.data import ingest as stage

    cfg = from_dict(stage.IngestConfig, config, where="ingest")
    result = stage.run(cfg, Path(dataset.path))
    dataset.metadata.update({k: v for k, v in summary(result).items() if k != "output_dir"})
    scalar = (str, int, float, bool)
    dataset.metadata.update(
        {f"lineage.{k}": v for k, v in result.lineage.items() if isinstance(v, scalar)}
    )
