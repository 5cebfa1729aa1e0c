"""Keep a frozen vision tower's outputs per image, so each image is encoded once per stage.

With the vision tower and its merger(s) frozen (`scale.freeze_vision`, `scale.freeze_merger`:
preference data teaches judging, not seeing) the tower is a fixed function of the pixels, and
a judge SFT sees each training image once per epoch and in both orders of its pair. Its forward
is ~20 % of a step of the embedded judge (0.021 s of 0.09 s at batch 4, one thread); what the
cache saves a whole stage: `make bench-train`.
`VisionCache` stands in for the tower's `forward`: it splits the batch into items (an image, or
a video's temporal patch group) by `grid_thw`, looks each one up by a hash of its pixel rows
and its grid, runs the tower once on the misses together and returns the output the tower
would have returned for the whole batch (Qwen2.5-VL's `BaseModelOutputWithPooling`, Qwen3-VL's
`BaseModelOutputWithDeepstackFeatures`). Items are independent in both towers (attention is
within an item: `cu_seqlens`), so the result equals a fresh forward up to float rounding.

    cache = VisionCache.install(model, max_items=100_000)   # training.prepare_model does this
    ...
    cache.remove()                                           # training.finish_model

At most `max_items` items are kept (least recently used out first). Memory: per item its
patch rows x the tower's width plus its merged tokens x the LM's width (and Qwen3-VL's
deepstack features), in the tower's dtype and on its device (for a 7B judge at 1,280 merged
tokens an image, ~40 MB: size `max_items` to the device). Refused, with the reason, where
the tower would not be a fixed function: a trainable parameter, dropout, or a tower's output
that is not a `ModelOutput`.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

ATTRIBUTE = "_unireward_vision_cache"


def find_tower(model: nn.Module) -> nn.Module:
    """The Qwen-VL vision tower inside `model` (`model.model.visual` for both families, also
    under a peft wrapper): the module named `visual` that has `spatial_merge_size`."""
    for name, module in model.named_modules():
        if name.split(".")[-1] == "visual" and hasattr(module, "spatial_merge_size"):
            return module
    raise ValueError(f"{type(model).__name__} has no Qwen-VL vision tower (`visual`)")


def _refusal(tower: nn.Module) -> str | None:
    trainable = [n for n, p in tower.named_parameters() if p.requires_grad]
    if trainable:
        return (
            f"{len(trainable)} of the vision tower's parameters are trainable (e.g. "
            f"{trainable[0]}): set scale.freeze_vision and scale.freeze_merger"
        )
    dropout = [n for n, m in tower.named_modules() if isinstance(m, nn.Dropout) and m.p > 0]
    if dropout or getattr(getattr(tower, "config", None), "attention_dropout", 0.0):
        return "the vision tower has dropout, so its output is not a fixed function of the pixels"
    return None


class VisionCache:
    """The cached forward of one vision tower (see the module docstring)."""

    def __init__(self, tower: nn.Module, max_items: int) -> None:
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items}")
        reason = _refusal(tower)
        if reason:
            raise ValueError(f"cannot cache the vision tower's outputs: {reason}")
        self.tower = tower
        self.max_items = max_items
        self.merge = int(tower.spatial_merge_size) ** 2
        self.forward_of_tower = tower.forward
        self.items: OrderedDict[bytes, dict[str, Any]] = OrderedDict()
        self.output_type: type | None = None
        self.hits = 0
        self.misses = 0

    @classmethod
    def install(cls, model: nn.Module, max_items: int) -> VisionCache:
        """Put a cache in front of `model`'s vision tower (its instance `forward`; the weights
        and their names are untouched, so checkpoints are the same)."""
        tower = find_tower(model)
        if hasattr(tower, ATTRIBUTE):
            raise ValueError("the vision tower already has a cache")
        cache = cls(tower, max_items)
        tower.forward = cache.forward
        setattr(tower, ATTRIBUTE, cache)
        return cache

    @staticmethod
    def uninstall(model: nn.Module) -> None:
        """Remove the cache of `model`'s tower, if it has one."""
        for module in model.modules():
            cache = module.__dict__.get(ATTRIBUTE)
            if cache is not None:
                cache.remove()

    def remove(self) -> None:
        self.tower.__dict__.pop("forward", None)
        self.tower.__dict__.pop(ATTRIBUTE, None)
        self.items.clear()

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "items": len(self.items)}

    def _key(self, rows: torch.Tensor, thw: torch.Tensor) -> bytes:
        digest = hashlib.blake2b(digest_size=16)
        digest.update(str((tuple(thw.tolist()), rows.dtype, tuple(rows.shape))).encode())
        digest.update(rows.detach().contiguous().cpu().view(torch.uint8).numpy().tobytes())
        return digest.digest()

    def _split(self, output, patches: list[int], tokens: list[int]) -> list[dict[str, Any]]:
        """The tower's output for several items -> one dict of per-item pieces each."""
        n_patches, n_tokens = sum(patches), sum(tokens)

        def pieces(value: torch.Tensor, key: str) -> tuple[torch.Tensor, ...]:
            if value.shape[0] == n_tokens:
                return torch.split(value.detach(), tokens)
            if value.shape[0] == n_patches:
                return torch.split(value.detach(), patches)
            raise ValueError(
                f"vision tower output {key!r} has {value.shape[0]} rows, neither the "
                f"{n_tokens} merged tokens nor the {n_patches} patches of its items"
            )

        items: list[dict[str, Any]] = [{} for _ in patches]
        for key, value in output.items():
            if isinstance(value, torch.Tensor):
                for item, piece in zip(items, pieces(value, key), strict=True):
                    item[key] = piece
            elif isinstance(value, list | tuple) and all(
                isinstance(v, torch.Tensor) for v in value
            ):
                split = [pieces(v, key) for v in value]
                for i, item in enumerate(items):
                    item[key] = [s[i] for s in split]
            else:
                raise ValueError(f"vision tower output {key!r} is not a tensor or list of them")
        return items

    def forward(self, hidden_states: torch.Tensor, grid_thw: torch.Tensor, **kwargs: Any):
        grids = grid_thw.tolist()
        patches = [t * h * w for t, h, w in grids]
        offsets = [0, *torch.tensor(patches).cumsum(0).tolist()]
        keys = [
            self._key(hidden_states[offsets[i] : offsets[i + 1]], grid_thw[i])
            for i in range(len(grids))
        ]
        first: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            if key not in self.items:
                first.setdefault(key, i)
        missing = list(first.values())  # each new item once, however often the batch holds it
        fresh: dict[bytes, dict[str, Any]] = {}
        if missing:
            rows = torch.cat([hidden_states[offsets[i] : offsets[i + 1]] for i in missing])
            output = self.forward_of_tower(rows, grid_thw=grid_thw[missing], **kwargs)
            if not hasattr(output, "items") or isinstance(output, tuple):
                raise ValueError(
                    f"cannot cache a vision tower that returns {type(output).__name__}"
                )
            self.output_type = type(output)
            split = self._split(
                output, [patches[i] for i in missing], [patches[i] // self.merge for i in missing]
            )
            for i, item in zip(missing, split, strict=True):
                fresh[keys[i]] = item
        self.misses += len(missing)
        self.hits += len(keys) - len(missing)
        parts = []
        for key in keys:
            item = fresh.get(key) or self.items[key]
            self.items[key] = item
            self.items.move_to_end(key)
            parts.append(item)
        while len(self.items) > self.max_items:
            self.items.popitem(last=False)
        return self.output_type(**{key: _join([p[key] for p in parts]) for key in parts[0]})


def _join(values: list) -> Any:
    if isinstance(values[0], torch.Tensor):
        return torch.cat(values)
    return [torch.cat(column) for column in zip(*values, strict=True)]
