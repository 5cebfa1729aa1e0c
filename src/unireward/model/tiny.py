"""Tiny Qwen-VL judges built from a config, with no downloads.

Production starts from a pretrained Qwen2.5-VL / Qwen3-VL checkpoint. The embedded default (CI,
laptops) uses the same model classes at a toy size: random weights, a byte-level BPE tokenizer
trained locally on the project's own prompt corpus plus the Qwen special tokens, the stock Qwen
image processor and a Qwen-style chat template. Everything is saved as safetensors and loads back
with `trust_remote_code=False`.

    from unireward.model.tiny import TinyModelConfig, build_tiny, save_checkpoint
    model, processor = build_tiny(TinyModelConfig.preset("test"), corpus)
    save_checkpoint(model, processor, out_dir)

Footguns recorded here so nobody rediscovers them:
- Rope: with Qwen's default rope (theta 1e6, mrope sections [16, 24, 24]) the 2x2 token grid of
  a 56 px image differs only in the lowest-frequency components and a tiny model never learns
  position. `rope_theta=10` with `mrope_section=[2, 4, 10]` (head_dim 32) fixes it.
- vLLM needs head_dim >= 32, so heads are sized from hidden_size // head_dim, not the reverse.
- Video reaches the judge as frames (images): the Qwen video processor needs torchvision, which
  does not import beside the CPU torch build.
- Qwen3-VL (`family="qwen3_vl"`): vision patches are 16 px (not 14), so images must be a multiple
  of 32 px (patch*merge), e.g. 64 (a 2x2 merged grid, 4 tokens). Its text rope is *interleaved*
  mrope: frequency slot i goes to H if i % 3 == 1 and i < 3*section[1], to W if i % 3 == 2 and
  i < 3*section[2], else to T. Sections are reused from the config as given (vLLM applies the
  same slicing); with head_dim 32 the default (2, 4, 10) gives T/H/W 7/4/5 slots, and since
  every axis gets high and low frequencies the Qwen2.5 footgun above does not arise. Deepstack
  adds features from the first min(3, vision_depth, num_layers) vision blocks to the first text
  layers. The vision tower also has a learned position grid, sized here to one image's patches.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

# Offline by design: nothing in this module may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# Qwen-style template: content is a string or a list of {"type": "image"|"video"|"text"} parts.
# No default system prompt: the tiny model pays for every token.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{% elif part['type'] == 'video' %}{{ '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}"
    "{% endif %}{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

Family = Literal["qwen2_5_vl", "qwen3_vl"]


@dataclass(frozen=True)
class TinyModelConfig:
    """Size and shape of a tiny Qwen-VL: `preset("test")` for unit tests, `"base"` by default."""

    family: Family = "qwen2_5_vl"
    vocab_size: int = 1024
    hidden_size: int = 128
    num_layers: int = 4
    head_dim: int = 32
    num_kv_heads: int = 2
    intermediate_size: int = 384
    vision_depth: int = 4
    vision_hidden_size: int = 128
    vision_intermediate_size: int = 256
    image_size: int = 56
    rope_theta: float = 10.0
    mrope_section: tuple[int, int, int] = (2, 4, 10)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.family not in ("qwen2_5_vl", "qwen3_vl"):
            raise ValueError(f"family must be 'qwen2_5_vl' or 'qwen3_vl', got {self.family!r}")
        if self.head_dim < 32:
            raise ValueError(f"head_dim {self.head_dim} < 32: vLLM cannot serve it; use >= 32")
        for name in ("hidden_size", "vision_hidden_size"):
            if getattr(self, name) % self.head_dim:
                raise ValueError(f"{name} must be a multiple of head_dim={self.head_dim}")
        if (self.hidden_size // self.head_dim) % self.num_kv_heads:
            raise ValueError("num_kv_heads must divide the number of attention heads")
        if sum(self.mrope_section) != self.head_dim // 2:
            raise ValueError(
                f"mrope_section {self.mrope_section} must sum to head_dim/2 = {self.head_dim // 2}"
            )
        if self.family == "qwen3_vl":
            if self.image_size % 32:
                raise ValueError(
                    f"image_size {self.image_size} must be a multiple of 32 (patch*merge) for "
                    "qwen3_vl, e.g. 64"
                )
        elif self.image_size % 28:
            raise ValueError(f"image_size {self.image_size} must be a multiple of 28 (patch*merge)")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> TinyModelConfig:
        presets: dict[str, dict[str, Any]] = {
            # ~0.3M parameters: unit tests, seconds per stage.
            "test": dict(
                vocab_size=512,
                hidden_size=64,
                num_layers=2,
                num_kv_heads=1,
                intermediate_size=128,
                vision_depth=1,
                vision_hidden_size=64,
                vision_intermediate_size=128,
                mrope_section=(2, 4, 10),
            ),
            # ~2M parameters: the embedded default's base model (learns the shapes world on CPU).
            "base": {},
        }
        if name not in presets:
            raise ValueError(
                f"unknown tiny model preset {name!r}; expected one of {sorted(presets)}"
            )
        return cls(**{**presets[name], **overrides})


def train_tokenizer(corpus: Iterable[str], vocab_size: int):
    """Byte-level BPE trained on `corpus`, wrapped as a fast tokenizer with the Qwen specials.

    Byte-level means any user text tokenizes (no unknown token); the merges make the project's own
    prompt wording cheap (about one token per word).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(SPECIAL_TOKENS[1:]),
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def allow_processor_without_video() -> None:
    """Let Qwen-VL processors be built and loaded with no video processor.

    Without torchvision (the CPU torch build here cannot import PyPI's torchvision) transformers
    5.19 has no real `VideoProcessorMixin`, and `ProcessorMixin.__init__` rejects
    `video_processor=None` while checking argument classes. The judge gets video as frames, so
    the video processor is genuinely unused; accept None for it and check everything else as
    before. Applied with or without torchvision, so a checkpoint behaves the same everywhere.
    Idempotent.
    """
    from transformers.processing_utils import ProcessorMixin

    if getattr(ProcessorMixin, "_unireward_no_video", False):
        return
    original = ProcessorMixin.check_argument_for_proper_class

    def check(self, argument_name, argument):
        if argument_name == "video_processor" and argument is None:
            return None
        return original(self, argument_name, argument)

    ProcessorMixin.check_argument_for_proper_class = check
    ProcessorMixin._unireward_no_video = True


# Processor class per family; `save_processor` records the name in preprocessor_config.json.
PROCESSOR_CLASSES = {"qwen2_5_vl": "Qwen2_5_VLProcessor", "qwen3_vl": "Qwen3VLProcessor"}


def build_processor(tokenizer, image_size: int, family: Family = "qwen2_5_vl"):
    """Qwen-VL processor: stock image processor pinned to `image_size`² pixels, no video one.

    Both families use `Qwen2VLImageProcessorPil`; Qwen3-VL's is configured like the released
    checkpoints (16 px patches, mean/std 0.5) and wrapped in `Qwen3VLProcessor`.
    """
    import transformers
    from transformers import Qwen2VLImageProcessorPil

    allow_processor_without_video()

    pixels = image_size * image_size
    if family == "qwen3_vl":
        image_processor = Qwen2VLImageProcessorPil(
            min_pixels=pixels,
            max_pixels=pixels,
            patch_size=16,
            image_mean=[0.5, 0.5, 0.5],
            image_std=[0.5, 0.5, 0.5],
        )
    else:
        image_processor = Qwen2VLImageProcessorPil(min_pixels=pixels, max_pixels=pixels)
    processor_class = getattr(transformers, PROCESSOR_CLASSES[family])
    processor = processor_class(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE
    )
    return _with_partwise_save(processor)


def _with_partwise_save(processor):
    """Route `processor.save_pretrained` (called by the Trainer at checkpoints) to
    `save_processor` when there is no video processor; instance-level, nothing global."""
    import types

    if processor.video_processor is None:

        def save_pretrained(self, save_directory, **_: Any) -> None:
            save_processor(self, Path(save_directory))

        processor.save_pretrained = types.MethodType(save_pretrained, processor)
    return processor


def _special_ids(tokenizer) -> dict[str, int]:
    return {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}


def _text_config(cfg: TinyModelConfig, tokenizer, **rope_extra: Any) -> dict[str, Any]:
    """The language-model half, the same for both families."""
    ids = _special_ids(tokenizer)
    return dict(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.hidden_size // cfg.head_dim,
        num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=4096,
        rope_parameters=dict(
            rope_type="default",
            rope_theta=cfg.rope_theta,
            mrope_section=list(cfg.mrope_section),
            **rope_extra,
        ),
        bos_token_id=None,
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )


def _vision_sizes(cfg: TinyModelConfig) -> dict[str, int]:
    """The vision tower's sizes, the same for both families."""
    return dict(
        depth=cfg.vision_depth,
        hidden_size=cfg.vision_hidden_size,
        intermediate_size=cfg.vision_intermediate_size,
        num_heads=cfg.vision_hidden_size // cfg.head_dim,
        out_hidden_size=cfg.hidden_size,
    )


def _vision_token_ids(tokenizer) -> dict[str, int]:
    ids = _special_ids(tokenizer)
    return dict(
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )


def _instantiate(model_cls, config, cfg: TinyModelConfig, tokenizer):
    import torch

    torch.manual_seed(cfg.seed)
    model = model_cls(config)
    ids = _special_ids(tokenizer)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.bos_token_id = None
    return model


def build_model(cfg: TinyModelConfig, tokenizer):
    """Random-weight Qwen-VL of `cfg.family` whose special-token ids match `tokenizer`."""
    if cfg.family == "qwen3_vl":
        return _build_qwen3_vl(cfg, tokenizer)
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    config = Qwen2_5_VLConfig(
        text_config=_text_config(cfg, tokenizer),
        vision_config=dict(
            **_vision_sizes(cfg),
            window_size=cfg.image_size * 2,
            fullatt_block_indexes=[cfg.vision_depth - 1],
        ),
        tie_word_embeddings=True,
        **_vision_token_ids(tokenizer),
    )
    return _instantiate(Qwen2_5_VLForConditionalGeneration, config, cfg, tokenizer)


def _build_qwen3_vl(cfg: TinyModelConfig, tokenizer):
    """Random-weight Qwen3-VL: same recipe as Qwen2.5-VL, plus deepstack and interleaved mrope."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    patch_size = 16
    n_deepstack = min(3, cfg.vision_depth, cfg.num_layers)
    config = Qwen3VLConfig(
        text_config={
            **_text_config(cfg, tokenizer, mrope_interleaved=True),
            "head_dim": cfg.head_dim,
        },
        vision_config=dict(
            **_vision_sizes(cfg),
            patch_size=patch_size,
            spatial_merge_size=2,
            temporal_patch_size=2,
            num_position_embeddings=(cfg.image_size // patch_size) ** 2,
            deepstack_visual_indexes=list(range(n_deepstack)),
        ),
        tie_word_embeddings=True,
        **_vision_token_ids(tokenizer),
    )
    return _instantiate(Qwen3VLForConditionalGeneration, config, cfg, tokenizer)


def build_tiny(cfg: TinyModelConfig, corpus: Iterable[str]):
    """(model, processor) for a fresh tiny judge."""
    tokenizer = train_tokenizer(corpus, cfg.vocab_size)
    return build_model(cfg, tokenizer), build_processor(tokenizer, cfg.image_size, cfg.family)


def save_processor(processor, out_dir: Path) -> None:
    """Save tokenizer, image processor and chat template where AutoProcessor looks for them.

    `ProcessorMixin.save_pretrained` cannot save a processor whose video processor is None (see
    `allow_processor_without_video`), so the parts are saved one by one.
    """
    import json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    processor.tokenizer.save_pretrained(out_dir)
    processor.image_processor.save_pretrained(out_dir)
    path = out_dir / "preprocessor_config.json"
    cfg = json.loads(path.read_text())
    cfg["processor_class"] = type(processor).__name__
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True))
    (out_dir / "chat_template.jinja").write_text(processor.chat_template)


def _processor_class(model_dir: Path):
    """The processor class `save_processor` recorded (preprocessor_config.json), else the one for
    config.json's model_type; Qwen2.5-VL when neither says (older checkpoints)."""
    import json

    import transformers

    name = None
    pre = model_dir / "preprocessor_config.json"
    if pre.exists():
        name = json.loads(pre.read_text()).get("processor_class")
    if name is None and (model_dir / "config.json").exists():
        model_type = json.loads((model_dir / "config.json").read_text()).get("model_type")
        name = PROCESSOR_CLASSES.get(model_type)
    name = name or PROCESSOR_CLASSES["qwen2_5_vl"]
    if name not in PROCESSOR_CLASSES.values():
        known = sorted(PROCESSOR_CLASSES.values())
        raise ValueError(f"{model_dir}: processor class {name!r} is not one of {known}")
    return getattr(transformers, name)


def chat_template(model_dir: Path) -> str:
    """The checkpoint's chat template, wherever its layout keeps it: `chat_template.jinja`
    (what transformers 5 and this project save), `chat_template.json` (the published Qwen-VL
    checkpoints), or `tokenizer_config.json`'s `chat_template` (older ones)."""
    import json

    model_dir = Path(model_dir)
    if (model_dir / "chat_template.jinja").exists():
        return (model_dir / "chat_template.jinja").read_text()
    for name in ("chat_template.json", "tokenizer_config.json"):
        path = model_dir / name
        template = json.loads(path.read_text()).get("chat_template") if path.exists() else None
        if isinstance(template, str) and template:
            return template
    raise FileNotFoundError(
        f"{model_dir} has no chat template (chat_template.jinja, chat_template.json or a "
        "chat_template in tokenizer_config.json)"
    )


def set_pixels(processor, min_pixels: int = 0, max_pixels: int = 0):
    """Bound Qwen's dynamic resolution: images are resized to keep their aspect with between
    `min_pixels` and `max_pixels` pixels (0 = keep the processor's bound). In place; the bounds
    are saved with the processor (preprocessor_config.json), which vLLM also reads."""
    image_processor = processor.image_processor
    size = image_processor.size
    low = min_pixels or size.shortest_edge
    high = max_pixels or size.longest_edge
    if low > high:
        raise ValueError(f"min_pixels {low} > max_pixels {high}")
    image_processor.size = type(size)(shortest_edge=low, longest_edge=high)
    return processor


def load_processor(model_dir: Path):
    """Inverse of `save_processor`, and a published checkpoint's own files; offline,
    trust_remote_code=False."""
    from transformers import AutoImageProcessor, AutoTokenizer

    allow_processor_without_video()
    model_dir = Path(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
    image_processor = AutoImageProcessor.from_pretrained(model_dir, trust_remote_code=False)
    processor = _processor_class(model_dir)(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=chat_template(model_dir),
    )
    return _with_partwise_save(processor)


def save_checkpoint(
    model,
    processor,
    out_dir: Path,
    extra: dict[str, Any] | None = None,
    state_dict: dict[str, Any] | None = None,
) -> Path:
    """Save model (safetensors) and processor; `extra` is written to unireward.json.
    `state_dict`: weights to save instead of the model's own (gathered from DeepSpeed ZeRO-3)."""
    import json

    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True, state_dict=state_dict)
    save_processor(processor, out_dir)
    if extra is not None:
        (out_dir / "unireward.json").write_text(json.dumps(extra, indent=2, sort_keys=True))
    return out_dir


DEVICES = ("cpu", "cuda")
DTYPES = ("float32", "bfloat16", "float16")


def check_placement(device: str, dtype: str, where: str) -> None:
    """A stage's `device` / `dtype` (where its model runs, the dtype its weights load in)."""
    if device not in DEVICES:
        raise ValueError(f"{where}.device must be one of {DEVICES}, got {device!r}")
    if dtype not in DTYPES:
        raise ValueError(f"{where}.dtype must be one of {DTYPES}, got {dtype!r}")


def load_checkpoint(
    model_dir: Path,
    device: str = "cpu",
    dtype: str = "float32",
    attn_implementation: str | None = None,
):
    """(model, processor) from a checkpoint directory: this project's or a published Qwen-VL
    one (sharded safetensors with their index included); safetensors only, no remote code.
    `dtype` and `attn_implementation` as in `ScaleParams` (None: transformers' choice)."""
    from transformers import AutoModelForImageTextToText

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").exists():
        raise FileNotFoundError(f"{model_dir} is not a model checkpoint (no config.json)")
    if not list(model_dir.glob("*.safetensors")):
        raise FileNotFoundError(f"{model_dir} has no *.safetensors weights (pickle is refused)")
    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    model = AutoModelForImageTextToText.from_pretrained(
        model_dir, trust_remote_code=False, use_safetensors=True, dtype=dtype, **extra
    ).to(device)
    return model, load_processor(model_dir)


def config_dict(cfg: TinyModelConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
