"""The tiny text-to-image policy of the shapes world, as a diffusers pipeline: built offline,
saved as safetensors in the standard diffusers layout, loaded with `trust_remote_code` never
needed.

    from unireward.genpolicy.model import GenPolicyConfig, build_pipeline, load_pipeline
    pipe = build_pipeline(GenPolicyConfig())            # random weights
    images = pipe(["a red circle at the top left"], generator=torch.Generator().manual_seed(0))
    pipe.save_pretrained(out_dir)                       # model_index.json, transformer/, ...
    pipe = load_pipeline(out_dir)

What is in it (the production analogue is SDXL-Turbo / PixArt at 1024 px with a VAE):
- `transformer`: diffusers' `PixArtTransformer2DModel` in pixel space (no VAE: a 32 px RGB image
  is 8x8 patches of 4 px), v-prediction, cross-attention to the caption;
- `text_encoder`: a 2-layer transformers `CLIPTextModel` trained with it, over a word-level
  tokenizer of the world's caption words (`tokenizer`): a caption with a word the policy never
  saw is an error, not a silent `[UNK]`;
- `scheduler`: DDPM for training (1,000 steps, cosine betas), DDIM for sampling, with
  classifier-free guidance against the `[NULL]` caption (the training drops captions to it).

Measured (one thread, batch 32, 32 px): a training step of the default size is ~0.3 s (a
diffusers UNet2DConditionModel of 1.7 M parameters: 1.6 s), so the policy trains in minutes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DiffusionPipeline,
    PixArtTransformer2DModel,
)

from unireward.data.shapes import COLOURS, EXTRA_COLOURS, MOTIONS, POSITIONS, SHAPES

SPECIAL = ("[PAD]", "[UNK]", "[NULL]")
CONFIG_FILE = "unireward_gen.json"


def caption_vocabulary() -> list[str]:
    """Every word a shapes-world caption uses (`shapes.describe`), in a fixed order."""
    words = ["a", "an", "at", "the", "moving"]
    for group in (COLOURS, EXTRA_COLOURS, SHAPES, POSITIONS, MOTIONS):
        for phrase in group:
            words += [w for w in phrase.split() if w not in words]
    return list(SPECIAL) + words


@dataclass(frozen=True)
class GenPolicyConfig:
    image_size: int = 32
    patch_size: int = 4
    num_layers: int = 4
    num_heads: int = 4
    head_dim: int = 32
    text_hidden_size: int = 64
    text_layers: int = 2
    max_caption_tokens: int = 12
    train_timesteps: int = 1000
    # v-prediction: measured, with epsilon prediction the 3,000- and 6,000-step policies learned
    # to ignore the caption (its effect on the prediction fell to ~0.3 % at every timestep:
    # at high noise the noise is predictable from the input alone, so the caption carries
    # almost no loss); the velocity is the image there, which the caption decides.
    prediction_type: str = "v_prediction"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size or self.image_size < 8:
            raise ValueError(
                f"image_size must be >= 8 and a multiple of patch_size, got {self.image_size} "
                f"and {self.patch_size}"
            )
        if self.prediction_type not in ("v_prediction", "epsilon", "sample"):
            raise ValueError(
                f"prediction_type must be v_prediction, epsilon or sample, got "
                f"{self.prediction_type!r}"
            )
        for name in ("num_layers", "num_heads", "head_dim", "text_layers", "max_caption_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def build_tokenizer(max_length: int):
    """The word-level caption tokenizer (a transformers fast tokenizer)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {word: i for i, word in enumerate(caption_vocabulary())}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="[PAD]",
        unk_token="[UNK]",
        model_max_length=max_length,
    )


class ShapesImagePipeline(DiffusionPipeline):
    """Caption -> image: DDIM sampling of the pixel-space PixArt transformer."""

    model_cpu_offload_seq = "text_encoder->transformer"

    def __init__(self, transformer, text_encoder, tokenizer, scheduler) -> None:
        super().__init__()
        self.register_modules(
            transformer=transformer,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            scheduler=scheduler,
        )

    @property
    def image_size(self) -> int:
        return int(self.transformer.config.sample_size)

    def tokenize(self, captions: Sequence[str]) -> dict[str, torch.Tensor]:
        """Token ids and mask; a caption the policy cannot encode is a ValueError."""
        unk, length = self.tokenizer.unk_token_id, self.tokenizer.model_max_length
        rows = []
        for caption in captions:
            caption = caption.strip()
            if not caption:
                raise ValueError("an empty caption: the policy draws a caption, give it one")
            ids = self.tokenizer(caption, add_special_tokens=False)["input_ids"]
            if unk in ids:
                vocab = self.tokenizer.get_vocab()
                words = [w for w in caption.split() if w not in vocab]
                raise ValueError(
                    f"caption {caption!r} has words the policy cannot encode: {words} (it knows "
                    "the shapes world's caption words: "
                    "unireward.genpolicy.model.caption_vocabulary)"
                )
            if len(ids) > length:
                raise ValueError(f"caption {caption!r} is longer than the policy's {length} words")
            rows.append(ids)
        return self.tokenize_ids(rows)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        device = self.text_encoder.device
        return self.text_encoder(
            input_ids.to(device), attention_mask=attention_mask.to(device)
        ).last_hidden_state

    def null_ids(self, n: int) -> dict[str, torch.Tensor]:
        """The `[NULL]` caption (classifier-free guidance's unconditional input), n times."""
        return self.tokenize_ids([[self.tokenizer.convert_tokens_to_ids("[NULL]")]] * n)

    def tokenize_ids(self, rows: list[list[int]]) -> dict[str, torch.Tensor]:
        length = self.tokenizer.model_max_length
        ids = torch.full((len(rows), length), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        return {"input_ids": ids, "attention_mask": mask}

    def target(
        self, images: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
    ) -> torch.Tensor:
        """What the transformer is trained to predict for `images` noised with `noise` at
        `timesteps`: the velocity (v-prediction, the default), the noise or the image."""
        kind = self.scheduler.config.prediction_type
        if kind == "v_prediction":
            return self.scheduler.get_velocity(images, noise, timesteps)
        if kind == "epsilon":
            return noise
        if kind == "sample":
            return images
        raise ValueError(f"unknown prediction_type {kind!r}")

    def predict_noise(
        self, noisy: torch.Tensor, timesteps: torch.Tensor, text: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """The transformer's prediction (`target`'s kind: what training and DPO score)."""
        return self.transformer(
            noisy,
            encoder_hidden_states=text,
            encoder_attention_mask=mask.to(noisy.device),
            timestep=timesteps,
            added_cond_kwargs={"resolution": None, "aspect_ratio": None},
        ).sample

    @torch.no_grad()
    def __call__(
        self,
        captions: Sequence[str],
        num_inference_steps: int = 20,
        guidance_scale: float = 3.0,
        generator: torch.Generator | None = None,
        output_type: str = "pil",
    ) -> list[Image.Image] | torch.Tensor:
        """Images for `captions` (PIL, or a [-1, 1] tensor with output_type="pt")."""
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        device = self.transformer.device
        tokens = self.tokenize(captions)
        text = self.encode(**tokens)
        mask = tokens["attention_mask"]
        if guidance_scale != 1.0:
            null = self.null_ids(len(captions))
            text = torch.cat([self.encode(**null), text])
            mask = torch.cat([null["attention_mask"], mask])
        size = self.image_size
        sample = torch.randn((len(captions), 3, size, size), generator=generator, device="cpu").to(
            device
        )
        scheduler = DDIMScheduler.from_config(self.scheduler.config)
        scheduler.set_timesteps(num_inference_steps)
        for t in scheduler.timesteps:
            batch = torch.cat([sample, sample]) if guidance_scale != 1.0 else sample
            steps = torch.full((batch.shape[0],), int(t), device=device, dtype=torch.long)
            eps = self.predict_noise(batch, steps, text, mask)
            if guidance_scale != 1.0:
                uncond, cond = eps.chunk(2)
                eps = uncond + guidance_scale * (cond - uncond)
            sample = scheduler.step(eps, t, sample, generator=generator).prev_sample
        sample = sample.clamp(-1, 1)
        if output_type == "pt":
            return sample
        return to_pil(sample)


def to_pil(sample: torch.Tensor) -> list[Image.Image]:
    """[-1, 1] (N, 3, H, W) -> RGB PIL images."""
    arr = ((sample.detach().cpu().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return [Image.fromarray(a.permute(1, 2, 0).numpy()) for a in arr]


def to_tensor(images: Sequence[Image.Image], size: int) -> torch.Tensor:
    """RGB PIL images -> [-1, 1] (N, 3, size, size), resized (area) where they differ."""
    out = []
    for image in images:
        image = image.convert("RGB")
        if image.size != (size, size):
            image = image.resize((size, size), Image.Resampling.BOX)
        out.append(torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1.0))
    return torch.stack(out).permute(0, 3, 1, 2).contiguous()


def build_pipeline(config: GenPolicyConfig) -> ShapesImagePipeline:
    """A policy with random weights (seeded by `config.seed`)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(config.seed)
    tokenizer = build_tokenizer(config.max_caption_tokens)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=config.text_hidden_size,
            intermediate_size=config.text_hidden_size * 2,
            num_hidden_layers=config.text_layers,
            num_attention_heads=2,
            max_position_embeddings=config.max_caption_tokens,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.pad_token_id,
        )
    )
    transformer = PixArtTransformer2DModel(
        sample_size=config.image_size,
        patch_size=config.patch_size,
        in_channels=3,
        out_channels=3,
        num_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        attention_head_dim=config.head_dim,
        cross_attention_dim=config.num_heads * config.head_dim,
        caption_channels=config.text_hidden_size,
        norm_num_groups=8,
        use_additional_conditions=False,
    )
    scheduler = DDPMScheduler(
        num_train_timesteps=config.train_timesteps,
        beta_schedule="squaredcos_cap_v2",
        prediction_type=config.prediction_type,
        clip_sample=False,
    )
    return ShapesImagePipeline(transformer, text_encoder, tokenizer, scheduler)


def save_pipeline(pipe: ShapesImagePipeline, out_dir: Path, extra: dict[str, Any]) -> Path:
    """diffusers' layout (safetensors), plus `unireward_gen.json` (how it was made)."""
    out_dir = Path(out_dir)
    pipe.save_pretrained(out_dir, safe_serialization=True)
    (out_dir / CONFIG_FILE).write_text(json.dumps(extra, indent=1, default=str))
    return out_dir


def load_pipeline(model_dir: Path) -> ShapesImagePipeline:
    """A saved policy (safetensors only; nothing fetched, no remote code)."""
    model_dir = Path(model_dir)
    if not (model_dir / "model_index.json").exists():
        raise FileNotFoundError(f"{model_dir} is not a saved policy (no model_index.json)")
    return ShapesImagePipeline.from_pretrained(
        str(model_dir), use_safetensors=True, local_files_only=True
    )


def config_of(pipe: ShapesImagePipeline) -> dict[str, Any]:
    """The sizes of `pipe` as a GenPolicyConfig dict (for model cards and MLflow)."""
    t = pipe.transformer.config
    return asdict(
        GenPolicyConfig(
            image_size=int(t.sample_size),
            patch_size=int(t.patch_size),
            num_layers=int(t.num_layers),
            num_heads=int(t.num_attention_heads),
            head_dim=int(t.attention_head_dim),
            text_hidden_size=int(pipe.text_encoder.config.hidden_size),
            text_layers=int(pipe.text_encoder.config.num_hidden_layers),
            max_caption_tokens=int(pipe.tokenizer.model_max_length),
            train_timesteps=int(pipe.scheduler.config.num_train_timesteps),
            prediction_type=str(pipe.scheduler.config.prediction_type),
        )
    )
