"""Cold-start teachers: who writes the CoT judgements the judge is distilled from.

One interface, two implementations, chosen by `TeacherConfig.kind` from a literal dict:

- `programmatic` (embedded default): the shapes-world teacher (`unireward.data.teacher`), which
  reads the record's ground truth and errs at `error_rate`;
- `openai`: any endpoint speaking the OpenAI chat-completions protocol with images -- GPT-4o, or
  a VLM served by vLLM (`python -m vllm.entrypoints.openai.api_server`). It is sent the judge's
  own CoT prompt (`contract.build_messages(cot=True)`, in the words of the templates it is
  made with) with every frame as a PNG data URL.

    teacher = make_teacher(TeacherConfig(kind="openai", base_url="http://127.0.0.1:8000/v1",
                                         model="Qwen2.5-VL-7B-Instruct", api_key_env=""))
    text = teacher.judge(record, dataset_root, index=0)     # raises TeacherError(reason)

Retries are this module's, not the client's (`max_retries=0` on the client), so every failure
is reported with its reason: timeouts, connection errors, 429 and 5xx are retried with
exponential backoff; other 4xx and empty replies fail at once. A reply that is text but not
well-formed CoT is the caller's to judge (`cold_start` records it as malformed).
"""

from __future__ import annotations

import base64
import io
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from unireward.data import teacher as shapes_teacher
from unireward.data.schema import Record
from unireward.prompt_templates import PromptTemplates

KINDS = ("programmatic", "openai")


class TeacherError(Exception):
    """The teacher gave no usable reply for an item; `reason` says why (logged per item)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class TeacherConfig:
    kind: str = "programmatic"
    # programmatic
    error_rate: float = 0.1
    style: str = "perception_first"
    seed: int = 0
    # openai: base_url and model of the endpoint; the API key is read from the environment
    # variable named by api_key_env ("" = the endpoint wants no key, e.g. a local vLLM).
    base_url: str = "https://api.openai.com/v1"
    model: str = "gpt-4o"
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 60.0
    max_retries: int = 3
    backoff_s: float = 1.0
    backoff_max_s: float = 30.0
    max_concurrency: int = 4  # requests in flight at once
    max_tokens: int = 512
    temperature: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"teacher.kind {self.kind!r} unknown; expected one of {list(KINDS)}")
        if self.style not in shapes_teacher.STYLES:
            raise ValueError(
                f"teacher.style {self.style!r} unknown; expected one of "
                f"{list(shapes_teacher.STYLES)}"
            )
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError(f"teacher.error_rate must be in [0, 1], got {self.error_rate}")
        if self.timeout_s <= 0 or self.backoff_s < 0 or self.backoff_max_s < 0:
            raise ValueError("teacher.timeout_s must be > 0, backoff_s and backoff_max_s >= 0")
        if self.max_retries < 0 or self.max_concurrency < 1 or self.max_tokens < 1:
            raise ValueError("teacher.max_retries >= 0, max_concurrency and max_tokens >= 1")


class Teacher(Protocol):
    """Writes one CoT judgement (`<think>..</think><answer>..</answer>`) of a pairwise record.

    `index` is the item's position in the run: a stochastic teacher seeds from it, so the
    judgement of an item does not depend on the order in which concurrent calls finish.
    Raises TeacherError when no reply could be had.
    """

    def judge(self, record: Record, root: Path, index: int) -> str: ...


class ProgrammaticTeacher:
    """The shapes-world teacher: ground truth in, CoT out, wrong at `error_rate`."""

    def __init__(self, config: TeacherConfig, templates: PromptTemplates | None = None) -> None:
        self.config = config  # reads the ground truth, not the prompt: templates are unused

    def judge(self, record: Record, root: Path, index: int) -> str:
        rng = np.random.default_rng([self.config.seed, index])
        return shapes_teacher.teacher_cot(
            record, rng, error_rate=self.config.error_rate, style=self.config.style
        )


def _data_url(image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def openai_messages(
    record: Record, root: Path, templates: PromptTemplates | None = None
) -> list[dict[str, Any]]:
    """The judge's CoT prompt (`templates`' wording; None = the default) in the chat-completions
    format: `{"type": "image"}` placeholders become `image_url` parts holding the frames as
    data URLs, in the same order."""
    from unireward.judge.examples import prompt_messages, record_images

    images = iter(record_images(record, root))
    content = []
    for part in prompt_messages(record, cot=True, templates=templates)[0]["content"]:
        if part["type"] == "image":
            content.append({"type": "image_url", "image_url": {"url": _data_url(next(images))}})
        else:
            content.append({"type": "text", "text": part["text"]})
    return [{"role": "user", "content": content}]


class OpenAITeacher:
    """A teacher VLM behind an OpenAI-compatible chat-completions endpoint."""

    def __init__(self, config: TeacherConfig, templates: PromptTemplates | None = None) -> None:
        from openai import OpenAI

        key = "EMPTY"
        if config.api_key_env:
            key = os.environ.get(config.api_key_env, "")
            if not key:
                raise ValueError(
                    f"teacher.api_key_env is {config.api_key_env!r} but that variable is unset; "
                    "export it, or set api_key_env: '' for an endpoint that needs no key"
                )
        self.config = config
        self.templates = templates
        self.client = OpenAI(
            base_url=config.base_url, api_key=key, timeout=config.timeout_s, max_retries=0
        )

    def _once(self, messages: list[dict[str, Any]]) -> tuple[str | None, str, bool]:
        """(text, failure reason, retryable) of one request."""
        import openai

        try:
            reply = self.client.chat.completions.create(
                model=self.config.model,
                messages=messages,
                max_tokens=self.config.max_tokens,
                temperature=self.config.temperature,
            )
        except openai.APITimeoutError:
            return None, f"timeout after {self.config.timeout_s:g} s", True
        except openai.APIConnectionError as err:
            return None, f"connection error: {err}", True
        except openai.APIStatusError as err:
            retry = err.status_code == 429 or err.status_code >= 500
            return None, f"HTTP {err.status_code}: {str(err)[:200]}", retry
        if not reply.choices or not reply.choices[0].message.content:
            return None, "empty reply (no choices or no content)", False
        return reply.choices[0].message.content, "", False

    def judge(self, record: Record, root: Path, index: int) -> str:
        messages = openai_messages(record, root, self.templates)
        attempts = self.config.max_retries + 1
        for attempt in range(attempts):
            text, reason, retry = self._once(messages)
            if text is not None:
                return text
            if not retry:
                raise TeacherError(reason)
            if attempt + 1 < attempts:
                time.sleep(min(self.config.backoff_max_s, self.config.backoff_s * 2**attempt))
        raise TeacherError(f"{reason} (after {attempts} attempts)")


_TEACHERS = {"programmatic": ProgrammaticTeacher, "openai": OpenAITeacher}


def make_teacher(config: TeacherConfig, templates: PromptTemplates | None = None) -> Teacher:
    """The teacher of `config.kind`; an OpenAI teacher is sent prompts in `templates`' words."""
    return _TEACHERS[config.kind](config, templates)
