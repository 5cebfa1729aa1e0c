"""Lets the CUDA torchvision wheel import next to the CPU torch in `.venv-serve` (vLLM CPU).

Installed by `make serve-venv` as a module plus a `.pth` line that registers it; never imported
by the project itself. Why: vLLM's Qwen-VL code imports `transformers` image processors that
import `torchvision.transforms.v2`. Only CUDA builds of torchvision are reachable here; with the
CPU torch their `_C` extension cannot load (it links libtorch_cuda), and then
`torchvision/_meta_registrations.py` fails at import, registering fake kernels for two ops
(`nms`, `qnms`) that `_C` would have defined. This hook defines those two op *schemas* (no
kernels) just before that module runs, and only if `_C` did not define them, so
`import torchvision` works; the image transforms vLLM uses are pure PyTorch. Calling
`torchvision.ops.nms` still fails loudly ("no kernel"), which nothing in serving does.

The hook costs nothing until torchvision is imported (it does not import torch at startup).
"""

from __future__ import annotations

import importlib.abc
import sys

_TARGET = "torchvision._meta_registrations"
_SCHEMAS = {
    "nms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}


def _define_missing_ops() -> None:
    import torch

    for name, schema in _SCHEMAS.items():
        if not _has_schema(name):
            torch.library.define(f"torchvision::{name}", schema)


def _has_schema(name: str) -> bool:
    import torch

    try:
        getattr(torch.ops.torchvision, name)
    except (AttributeError, RuntimeError):
        return False
    return True


class _Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):  # type: ignore[override]
        if fullname == _TARGET:
            sys.meta_path.remove(self)
            _define_missing_ops()
        return None  # the normal finders import the module


def install() -> None:
    if not any(isinstance(f, _Hook) for f in sys.meta_path):
        sys.meta_path.insert(0, _Hook())
