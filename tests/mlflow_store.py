"""What a stage left in a real local MLflow store (sqlite + files), for the stage tests:
`logged_artifacts(uri, "evaluate-tiny")` lists every artifact file of the run by that name.

`pythonpath = ["tests"]` in pyproject.toml makes it importable as `mlflow_store`.
"""

from __future__ import annotations


def logged_artifacts(tracking_uri: str, run_name: str) -> set[str]:
    """Every artifact file (recursively, as `dir/file`) of the one run named `run_name`."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    runs = [
        r
        for e in client.search_experiments()
        for r in client.search_runs([e.experiment_id])
        if r.info.run_name == run_name
    ]
    assert len(runs) == 1, f"{len(runs)} runs named {run_name!r} in {tracking_uri}"
    out: set[str] = set()
    pending = [None]
    while pending:
        for item in client.list_artifacts(runs[0].info.run_id, pending.pop()):
            (pending.append(item.path) if item.is_dir else out.add(item.path))
    return out
