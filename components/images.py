"""Container images of the Kubeflow components: the one place they are named.

    python -m pipelines.compile --profile quick --output build/unireward-quick.yaml

`CPU_IMAGE` (containers/Dockerfile.cpu) runs the data and registry stages; `TRAIN_IMAGE`
(containers/Dockerfile.train: CUDA base, DeepSpeed) runs the stages that train or run the judge
on the GPU pool; `SERVE_IMAGE` (containers/Dockerfile.serve, vLLM) is named here for the
kustomize overlays (infra/). The images carry `unireward` and `kfp` themselves, so every
component says `install_kfp_package=False` and none uses `packages_to_install`: nothing is
installed when a task starts. Locally, `kfp.local.SubprocessRunner` ignores images and runs the
component bodies in the current interpreter. Override per deployment with the environment
variables at compile time, e.g. `UNIREWARD_CPU_IMAGE=123.dkr.ecr.../unireward/cpu:<commit>`
(`make images` tags the CPU image with the commit it was built from).
"""

import os

CPU_IMAGE = os.environ.get("UNIREWARD_CPU_IMAGE", "registry.example.com/unireward/cpu:0.1.0")
TRAIN_IMAGE = os.environ.get(
    "UNIREWARD_TRAIN_IMAGE", "registry.example.com/unireward/train-cuda:0.1.0"
)
SERVE_IMAGE = os.environ.get("UNIREWARD_SERVE_IMAGE", "registry.example.com/unireward/serve:0.1.0")
