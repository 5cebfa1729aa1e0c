"""Kubeflow component of stage 1, `ingest`: a raw source into a canonical dataset.

python -m pipelines.compile --profile quick --output build/unireward-quick.yaml
"""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def ingest(config: dict, dataset: Output[Dataset]):
    """`dataset` is a directory: records.parquet, media/ and lineage.json."""
    from pathlib import Path

    from unireward.cli import summary
    from unireward.config import from_dict
    from unireward.data import ingest as stage

    cfg = from_dict(stage.IngestConfig, config, where="ingest")
    result = stage.run(cfg, Path(dataset.path))
    dataset.metadata.update({k: v for k, v in summary(result).items() if k != "output_dir"})
