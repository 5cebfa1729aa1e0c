"""Tiny Qwen3-VL: built offline, forward and generate with images, safetensors round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from unireward.model.tiny import TinyModelConfig, build_tiny, load_checkpoint, save_checkpoint

CORPUS = [
    "Image 1: a red circle at the top left. Image 2: a blue square at the bottom right.",
    "Caption: a green triangle in the middle. Answer yes or no.",
] * 20


@pytest.fixture(scope="module")
def qwen3():
    cfg = TinyModelConfig.preset("test", family="qwen3_vl", image_size=64)
    model, processor = build_tiny(cfg, CORPUS)
    return cfg, model.eval(), processor


def test_builds_qwen3_vl_with_the_tokenizer_special_ids(qwen3) -> None:
    cfg, model, processor = qwen3
    tok = processor.tokenizer
    assert type(model).__name__ == "Qwen3VLForConditionalGeneration"
    assert type(processor).__name__ == "Qwen3VLProcessor"
    assert model.config.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert model.config.vision_start_token_id == tok.convert_tokens_to_ids("<|vision_start|>")
    assert model.generation_config.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")
    text = model.config.text_config
    assert text.head_dim == cfg.head_dim >= 32
    assert text.hidden_size == cfg.hidden_size and text.num_hidden_layers == cfg.num_layers
    assert text.rope_parameters["mrope_interleaved"] is True
    vision = model.config.vision_config
    assert vision.patch_size == 16 and vision.depth == cfg.vision_depth
    assert all(i < vision.depth for i in vision.deepstack_visual_indexes)
    assert model.config.tie_word_embeddings
    assert model.lm_head.weight is model.get_input_embeddings().weight


def test_forward_and_greedy_generate_with_two_images(vl_inputs, qwen3) -> None:
    _, model, processor = qwen3
    inputs = vl_inputs(processor, size=64)
    # A 64 px image is 4x4 patches of 16 px, merged 2x2: 4 image tokens each.
    assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == 8
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape == (1, inputs["input_ids"].shape[1], len(processor.tokenizer))
    assert torch.isfinite(logits).all()
    out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]
    assert isinstance(processor.batch_decode(out[:, inputs["input_ids"].shape[1] :])[0], str)


def test_checkpoint_round_trip_is_safetensors_with_identical_logits(
    vl_inputs, qwen3, tmp_path: Path
) -> None:
    _, model, processor = qwen3
    out = save_checkpoint(model, processor, tmp_path / "q3")
    assert list(out.glob("*.safetensors"))
    assert not list(out.glob("*.bin")) and not list(out.glob("*.pt"))
    assert json.loads((out / "config.json").read_text())["model_type"] == "qwen3_vl"
    pre = json.loads((out / "preprocessor_config.json").read_text())
    assert pre["processor_class"] == "Qwen3VLProcessor" and pre["patch_size"] == 16

    again, again_processor = load_checkpoint(out)
    assert type(again).__name__ == "Qwen3VLForConditionalGeneration"
    assert type(again_processor).__name__ == "Qwen3VLProcessor"
    inputs = vl_inputs(processor, size=64)
    reloaded_inputs = vl_inputs(again_processor, size=64)
    assert torch.equal(inputs["input_ids"], reloaded_inputs["input_ids"])
    assert torch.equal(inputs["pixel_values"], reloaded_inputs["pixel_values"])
    with torch.no_grad():
        a = model(**inputs).logits
        b = again.eval()(**reloaded_inputs).logits
    assert torch.equal(a, b)


def test_processor_class_falls_back_to_config_model_type(qwen3, tmp_path: Path) -> None:
    _, model, processor = qwen3
    out = save_checkpoint(model, processor, tmp_path / "q3")
    path = out / "preprocessor_config.json"
    pre = json.loads(path.read_text())
    del pre["processor_class"]
    path.write_text(json.dumps(pre))
    _, loaded = load_checkpoint(out)
    assert type(loaded).__name__ == "Qwen3VLProcessor"


@pytest.mark.parametrize("size", [56, 60, 28])
def test_qwen3_image_size_must_be_a_multiple_of_32(size: int) -> None:
    with pytest.raises(ValueError, match="multiple of 32"):
        TinyModelConfig(family="qwen3_vl", image_size=size)
    assert TinyModelConfig(family="qwen3_vl", image_size=64).image_size == 64
