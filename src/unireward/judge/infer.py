"""Batched judge inference with transformers `generate` (left padding, greedy by default).

The published inference scripts call `generate` one item at a time; batching is the cheap
first win on CPU and GPU alike. (A vLLM backend comes with the serving stage.)

    texts = generate_texts(model, processor, [(messages, images), ...], batch_size=32)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL import Image

from unireward.progress import progress

Prompt = tuple[list[dict[str, Any]], list[Image.Image]]


def generate_texts(
    model,
    processor,
    prompts: Sequence[Prompt],
    *,
    max_new_tokens: int = 16,
    min_new_tokens: int = 0,
    batch_size: int = 32,
    do_sample: bool = False,
    temperature: float = 1.0,
    seed: int = 0,
) -> list[str]:
    """Decode one completion per (messages, images) prompt, special tokens stripped.
    `min_new_tokens` > 0 suppresses the end token until then (benchmarks: equal lengths)."""
    import torch

    tokenizer = processor.tokenizer
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    torch.manual_seed(seed)
    outputs: list[str] = []
    try:
        starts = range(0, len(prompts), batch_size)
        for start in progress(starts, f"generate ({len(prompts)} prompts)", len(starts)):
            batch = prompts[start : start + batch_size]
            texts = [
                processor.apply_chat_template(m, add_generation_prompt=True, tokenize=False)
                for m, _ in batch
            ]
            images = [img for _, imgs in batch for img in imgs] or None
            inputs = processor(
                text=texts, images=images, padding=True, padding_side="left", return_tensors="pt"
            ).to(device)
            with torch.inference_mode():
                out = model.generate(
                    **inputs,
                    max_new_tokens=max_new_tokens,
                    min_new_tokens=min_new_tokens or None,
                    do_sample=do_sample,
                    temperature=temperature if do_sample else None,
                    top_p=None,
                    top_k=None,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                )
            new = out[:, inputs["input_ids"].shape[1] :]
            outputs.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
    finally:
        model.train(was_training)
    return outputs
