"""Kubeflow components: one module per stage, each a thin `@dsl.component` around the stage's
`run()`. Modules import only `kfp` and the standard library at top level, so a pipeline compiles
with `kfp` alone; the bodies import `unireward`, which the component images carry.

    python -m pipelines.compile --profile quick --output build/unireward-quick.yaml
"""
