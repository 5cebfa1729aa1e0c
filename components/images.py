"""Container images of the Kubeflow components: the one place they are named.

    python -m pipelines.compile --profile quick --output build/unireward-quick.yaml

`CPU_IMAGE` runs the data and registry stages; `TRAIN_IMAGE` (CUDA base, DeepSpeed) runs the
stages that train or run the judge. Both carry the `unireward` package itself, so no component
uses `packages_to_install`. Locally, `kfp.local.SubprocessRunner` ignores images and runs the
component bodies in the current interpreter. Override per deployment with the environment
variables at compile time.
"""

import os

CPU_IMAGE = os.environ.get("UNIREWARD_CPU_IMAGE", "registry.example.com/unireward/cpu:0.1.0")
TRAIN_IMAGE = os.environ.get(
    "UNIREWARD_TRAIN_IMAGE", "registry.example.com/unireward/train-cuda:0.1.0"
)
