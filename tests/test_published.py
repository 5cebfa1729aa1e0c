"""What users have: a published Qwen-VL checkpoint layout (sharded safetensors with the index,
`chat_template.json`, a dynamic-resolution image processor, the template's default system
prompt), and the settings real runs need (bf16, gradient checkpointing, LoRA merged on save,
frozen vision tower / merger, gradient accumulation to a global batch, pixel bounds).

The fixture is a tiny random Qwen2.5-VL saved the way the Hugging Face releases are; the same
code paths then load, train, save and serve it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from unireward.model.tiny import chat_template, load_checkpoint, load_processor, set_pixels
from unireward.training import LoraParams, ScaleParams, TrainParams, train_sft

# The chat template of the Qwen2.5-VL-Instruct releases (chat_template.json): a default system
# prompt, and optional "Picture k:" labels.
QWEN25_VL_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture "
    "{{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video "
    "{{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
MIN_PIXELS, MAX_PIXELS = 28 * 28 * 4, 28 * 28 * 16  # 2x2 to 4x4 merged tokens per image


def save_published_layout(model_dir: Path, out_dir: Path) -> Path:
    """Re-save a checkpoint as a Hugging Face Qwen2.5-VL release is laid out."""
    from transformers import Qwen2VLImageProcessorPil

    model, processor = load_checkpoint(model_dir)
    out_dir.mkdir(parents=True)
    model.save_pretrained(out_dir, safe_serialization=True, max_shard_size="300KB")
    processor.tokenizer.save_pretrained(out_dir)
    config = out_dir / "tokenizer_config.json"
    tokenizer_config = json.loads(config.read_text())
    tokenizer_config.pop("chat_template", None)
    config.write_text(json.dumps(tokenizer_config, indent=2))
    (out_dir / "chat_template.jinja").unlink(missing_ok=True)
    (out_dir / "chat_template.json").write_text(json.dumps({"chat_template": QWEN25_VL_TEMPLATE}))
    image_processor = Qwen2VLImageProcessorPil(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    image_processor.save_pretrained(out_dir)
    pre = out_dir / "preprocessor_config.json"
    pre.write_text(
        json.dumps({**json.loads(pre.read_text()), "processor_class": "Qwen2_5_VLProcessor"})
    )
    return out_dir


@pytest.fixture(scope="module")
def published(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_published_layout(tiny_model_dir, tmp_path_factory.mktemp("hub") / "Qwen2.5-VL")


def _grid(processor, size: tuple[int, int]) -> list[int]:
    from PIL import Image

    return processor.image_processor(images=[Image.new("RGB", size)])["image_grid_thw"][0].tolist()


def test_the_fixture_has_the_published_layout(published: Path) -> None:
    names = {p.name for p in published.iterdir()}
    shards = sorted(n for n in names if n.endswith(".safetensors"))
    assert len(shards) > 1 and "model.safetensors.index.json" in names
    assert "chat_template.json" in names and "chat_template.jinja" not in names
    assert "chat_template" not in json.loads((published / "tokenizer_config.json").read_text())


def test_a_published_checkpoint_loads_with_its_template_and_dynamic_resolution(
    published: Path, tiny_model_dir: Path
) -> None:
    model, processor = load_checkpoint(published)
    reference, _ = load_checkpoint(tiny_model_dir)
    for (name, a), (_, b) in zip(
        model.state_dict().items(), reference.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), f"{name} changed across the shards"
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}],
        add_generation_prompt=True,
        tokenize=False,
    )
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.")
    # Dynamic resolution: the grid follows the image, within the pixel bounds.
    assert _grid(processor, (56, 56)) == [1, 4, 4]
    assert _grid(processor, (112, 56)) == [1, 4, 8]
    assert _grid(processor, (560, 560)) == [1, 8, 8]  # at most MAX_PIXELS
    assert _grid(processor, (8, 8)) == [1, 4, 4]  # at least MIN_PIXELS


def test_pixel_bounds_are_set_and_saved(published: Path, tmp_path: Path) -> None:
    from unireward.model.tiny import save_processor

    processor = set_pixels(load_processor(published), max_pixels=28 * 28 * 4)
    assert _grid(processor, (560, 560)) == [1, 4, 4]
    save_processor(processor, tmp_path)
    assert _grid(load_processor(tmp_path), (560, 560)) == [1, 4, 4]
    with pytest.raises(ValueError, match="min_pixels"):
        set_pixels(processor, min_pixels=10**6)


def test_no_template_is_a_clear_error(published: Path, tmp_path: Path) -> None:
    import shutil

    copy = shutil.copytree(published, tmp_path / "copy")
    (copy / "chat_template.json").unlink()
    with pytest.raises(FileNotFoundError, match="no chat template"):
        chat_template(copy)


def test_scale_settings_refuse_bad_values() -> None:
    with pytest.raises(ValueError, match="precision"):
        ScaleParams(precision="fp8")
    with pytest.raises(ValueError, match="attn_implementation"):
        ScaleParams(attn_implementation="flash")
    with pytest.raises(ValueError, match="not both"):
        ScaleParams(global_batch_size=128, gradient_accumulation_steps=2)
    with pytest.raises(ValueError, match="lora"):
        LoraParams(r=-1)
    with pytest.raises(ValueError, match="ZeRO-3"):
        TrainParams(
            deepspeed="configs/deepspeed/zero3.json", scale=ScaleParams(lora=LoraParams(r=8))
        )


def test_global_batch_gives_the_accumulation() -> None:
    scale = ScaleParams(global_batch_size=128)
    assert scale.accumulation(batch_size=4, world_size=8) == 4  # the published 8 x H100 recipe
    assert ScaleParams(gradient_accumulation_steps=3).accumulation(16, 1) == 3
    with pytest.raises(ValueError, match="not a multiple"):
        scale.accumulation(batch_size=3, world_size=8)


# --------------------------------------------------------------------------- training


def _rows(processor, n: int = 8) -> list[dict]:
    """Prompt-completion rows with one image each (the shape every SFT stage trains on)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        size = (56, 56) if i % 2 else (112, 56)  # two resolutions in one batch
        image = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
        rows.append(
            {
                "prompt": [
                    {
                        "role": "user",
                        "content": [{"type": "image"}, {"type": "text", "text": "What colour?"}],
                    }
                ],
                "completion": [{"role": "assistant", "content": [{"type": "text", "text": "red"}]}],
                "images": [image],
            }
        )
    return rows


def _dataset(processor):
    from datasets import Dataset

    return Dataset.from_list(_rows(processor))


class _Watch:
    """Trainer callback: what the model looked like while it trained."""

    def __init__(self) -> None:
        from transformers import TrainerCallback

        watch = self

        class Callback(TrainerCallback):
            def on_step_end(self, args, state, control, model=None, **_):
                watch.checkpointing = model.is_gradient_checkpointing
                watch.trainable = {n for n, p in model.named_parameters() if p.requires_grad}
                watch.autocast = args.bf16

        self.callback = Callback()


def _params(tmp: Path, **scale) -> TrainParams:
    return TrainParams(
        max_steps=2,
        batch_size=4,
        learning_rate=1e-2,
        lr_scheduler="constant",
        warmup_ratio=0.0,
        save_steps=1,
        logging_steps=1,
        scale=ScaleParams(**scale),
    )


def test_bf16_with_gradient_checkpointing_trains_and_saves(published: Path, tmp_path: Path) -> None:
    from unireward.model.tiny import save_checkpoint
    from unireward.training import load_for_training

    params = _params(tmp_path, precision="bf16", gradient_checkpointing=True, dtype="bfloat16")
    model, processor = load_for_training(published, params)
    assert model.dtype == torch.bfloat16
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    watch = _Watch()
    outcome = train_sft(
        model, processor, _dataset(processor), params, tmp_path / "run", [watch.callback]
    )
    assert outcome.global_step == 2 and watch.checkpointing and watch.autocast
    losses = [h["loss"] for h in outcome.log_history if "loss" in h]
    assert losses and all(map(lambda v: v == v and v > 0, losses))
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert any("language_model" in n for n in changed) and any("visual" in n for n in changed)
    saved = save_checkpoint(model, processor, tmp_path / "judge")
    again, again_processor = load_checkpoint(saved, dtype="bfloat16")
    for name, p in again.named_parameters():
        assert torch.equal(p, dict(model.named_parameters())[name]), name
    # the published template and pixel bounds travel with the trained judge
    assert chat_template(saved) == QWEN25_VL_TEMPLATE
    assert _grid(again_processor, (112, 56)) == [1, 4, 8]


def test_lora_trains_the_adapter_and_saves_a_plain_merged_model(
    published: Path, tmp_path: Path
) -> None:
    from unireward.model.tiny import save_checkpoint

    params = _params(tmp_path, lora=LoraParams(r=4, alpha=8, dropout=0.0))
    model, processor = load_checkpoint(published)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    watch = _Watch()
    train_sft(model, processor, _dataset(processor), params, tmp_path / "run", [watch.callback])
    # only the adapters trained, and only on the language model's projections
    assert watch.trainable and all("lora_" in n for n in watch.trainable)
    assert all("language_model" in n for n in watch.trainable)
    # merged back: the same parameter names as before, the projections moved, nothing else
    after = dict(model.named_parameters())
    assert set(after) == set(before)
    moved = {n for n in after if not torch.equal(after[n], before[n])}
    assert moved and all("language_model" in n and "proj" in n for n in moved)
    saved = save_checkpoint(model, processor, tmp_path / "judge")
    from safetensors.torch import load_file

    keys = load_file(str(saved / "model.safetensors"))
    assert keys and not [k for k in keys if "lora" in k or "base_layer" in k]


def test_lora_resumes_from_its_adapter_checkpoint(published: Path, tmp_path: Path) -> None:
    lora = LoraParams(r=4, alpha=8, dropout=0.0)
    run = tmp_path / "run"
    model, processor = load_checkpoint(published)
    first = train_sft(model, processor, _dataset(processor), _params(tmp_path, lora=lora), run)
    assert (
        first.global_step == 2
        and (run / "checkpoints" / "checkpoint-2" / "adapter_model.safetensors").exists()
    )
    # a fresh process: the base again, the same output dir, more steps -> continues at step 2
    model, processor = load_checkpoint(published)
    more = TrainParams(**{**_params(tmp_path, lora=lora).__dict__, "max_steps": 4})
    second = train_sft(model, processor, _dataset(processor), more, run)
    assert second.global_step == 4 and second.resumed_from.endswith("checkpoint-2")
    # and one that is already done reloads the adapter instead of training again
    model, processor = load_checkpoint(published)
    done = train_sft(model, processor, _dataset(processor), more, run)
    assert done.global_step == 4 and done.train_seconds == 0.0
    reference, _ = load_checkpoint(published)
    q = "model.language_model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(dict(model.named_parameters())[q], dict(reference.named_parameters())[q])


@pytest.mark.parametrize(
    "scale, frozen, trained",
    [
        ({"freeze_vision": True}, "visual.blocks", "visual.merger"),
        ({"freeze_merger": True}, "visual.merger", "visual.blocks"),
    ],
)
def test_freezing_the_vision_tower_or_its_merger(
    published: Path, tmp_path: Path, scale: dict, frozen: str, trained: str
) -> None:
    model, processor = load_checkpoint(published)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train_sft(model, processor, _dataset(processor), _params(tmp_path, **scale), tmp_path / "run")
    after = dict(model.named_parameters())
    assert all(torch.equal(after[n], before[n]) for n in after if frozen in n)
    assert any(not torch.equal(after[n], before[n]) for n in after if trained in n)
    assert all(p.requires_grad for p in after.values()), "the saved model is whole again"


# --------------------------------------------------------------------------- serving


@pytest.mark.integration
def test_vllm_serves_the_published_layout_and_the_reward_client_answers(
    published: Path, tmp_path: Path
) -> None:
    from PIL import Image

    from unireward.serving import serve
    from unireward.serving.client import ClientConfig, PairQuery, RewardClient
    from unireward.tasks import Task

    root = Path(__file__).resolve().parents[1]
    vllm_python = root / ".venv-serve" / "bin" / "python"
    if not vllm_python.exists():
        pytest.skip("vLLM venv missing: run `make serve-venv` (make test does)")
    key_env = "UNIREWARD_TEST_PUBLISHED_KEY"
    config = serve.ServeConfig(
        api_key_env=key_env,
        vllm_python=str(vllm_python),
        max_images_per_prompt=2,
        max_image_pixels=MAX_PIXELS,
        max_num_seqs=4,
        startup_timeout_s=240,
    )
    os.environ[key_env] = "published-test-key-not-a-secret"
    try:
        with serve.run(config, tmp_path / "serve", model_dir=published) as server:
            client = RewardClient(ClientConfig(server.base_url, os.environ[key_env]))
            red, blue = Image.new("RGB", (56, 56), "red"), Image.new("RGB", (112, 56), "blue")
            query = PairQuery(Task.IMAGE_GENERATION, "a red circle", (red, blue))
            [judged] = client.judge_pairs([query], swap=True)
    finally:
        os.environ.pop(key_env, None)
    assert judged.error is None and judged.text is not None and judged.swapped_text is not None
    # random weights: any text, typed as a verdict or unparseable with its reason, never a guess
    assert (judged.verdict.preferred in (0, 1, 2)) != (judged.verdict.reason is not None)
