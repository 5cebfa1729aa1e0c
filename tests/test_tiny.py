"""Tiny Qwen-VL models: built offline from a config, safetensors round trip, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from unireward.model.tiny import TinyModelConfig, load_checkpoint


def test_checkpoint_round_trip_gives_identical_logits(vl_inputs, tiny_model_dir: Path) -> None:
    model, processor = load_checkpoint(tiny_model_dir)
    inputs = vl_inputs(processor)
    # A 56 px image is a 2x2 grid of merged tokens: 4 image tokens each.
    assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == 8
    with torch.no_grad():
        a = model(**inputs).logits
    again, _ = load_checkpoint(tiny_model_dir)
    with torch.no_grad():
        b = again(**inputs).logits
    assert torch.equal(a, b)


def test_checkpoint_is_safetensors_and_chat_template_is_qwen_style(tiny_model_dir: Path) -> None:
    assert list(tiny_model_dir.glob("*.safetensors"))
    assert not list(tiny_model_dir.glob("*.bin"))
    _, processor = load_checkpoint(tiny_model_dir)
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}],
        add_generation_prompt=True,
        tokenize=False,
    )
    assert text == (
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>hi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_load_refuses_a_directory_without_safetensors(tmp_path: Path, tiny_model_dir: Path) -> None:
    for f in tiny_model_dir.iterdir():
        if f.suffix != ".safetensors":
            (tmp_path / f.name).write_bytes(f.read_bytes())
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(FileNotFoundError, match="safetensors"):
        load_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        load_checkpoint(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"head_dim": 16, "mrope_section": (2, 2, 4)}, "vLLM"),
        ({"mrope_section": (4, 6, 8)}, "sum to head_dim/2"),
        ({"image_size": 60}, "multiple of 28"),
        ({"family": "llava"}, "family"),
        ({"num_kv_heads": 3}, "num_kv_heads"),
    ],
)
def test_config_validation_says_how_to_fix(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TinyModelConfig(**overrides)


def test_presets() -> None:
    assert TinyModelConfig.preset("test").hidden_size < TinyModelConfig.preset("base").hidden_size
    with pytest.raises(ValueError, match="preset"):
        TinyModelConfig.preset("huge")
