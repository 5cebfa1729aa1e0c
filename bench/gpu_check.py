"""GPU check: does the project's own training path run at speed on one GPU? SFT steps/s,
tokens/s and model FLOP utilisation (MFU) of a ~1B-parameter Qwen2.5-VL-shaped random judge in
bf16 with gradient checkpointing, then the same under DeepSpeed ZeRO-2, then GRPO steps/s.

    python bench/gpu_check.py                       # one H100: under 8 minutes (the goal)
    python bench/gpu_check.py --json build/gpu-check.json --peak-tflops 989
    python bench/gpu_check.py --small               # CPU: a tiny model, a few steps (tests)

Not yet run on a GPU (docs/production.md): no GPU was lent to the session that wrote it.

What runs, each phase in a subprocess of its own (fresh CUDA memory, DeepSpeed and accelerate
state; a phase that fails is reported with its error and the others still run):

1. the judge: `model.tiny` at `--size` (default: LM hidden 2048 x 20 layers, head_dim 128,
   2 KV heads, MLP 5504; vision 8 blocks x 1280, 448 px images = 256 merged tokens each; the
   project's locally trained ~1k-token vocabulary, so ~1.06B parameters with almost no
   embedding), saved as safetensors, and a shapes-world dataset (pairwise and pointwise rows
   of every task; `unified_sft`'s rows and example stream);
2. `sft`: `training.load_for_training` + `training.train_sft` (TRL SFT, what `unified_sft.run`
   calls) with `ScaleParams(precision=bf16, dtype=bfloat16, gradient_checkpointing=True)`,
   `--warmup` steps then `--steps` timed steps (a callback synchronises CUDA at each step);
3. `zero2`: the same with `configs/deepspeed/zero2.json` in one process (skipped, with the
   reason, without CUDA or without deepspeed installed: `make venv-deepspeed`);
4. `grpo`: `think.grpo.run` (TRL GRPO, format + accuracy rewards) on a hard set of labelled
   pairs: `--grpo-steps` timed steps of `--generations` completions of up to
   `--completion-length` tokens.

Tokens are the examples' real tokens (prompt with image tokens, and answer; padding left out),
recomputed with the checkpoint's processor for exactly the rows the timed steps trained on
(one process, no data workers: row i is step i // batch's). MFU = model FLOPs / s /
(`--peak-tflops` x 1e12), model FLOPs = `training_flops` (6 x parameters x tokens plus
attention; activation recomputation not counted, as MFU is defined).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ZERO2 = ROOT / "configs" / "deepspeed" / "zero2.json"
H100_BF16_DENSE_TFLOPS = 989.0  # H100 SXM, bf16 dense (no sparsity)
PHASES = ("sft", "zero2", "grpo")


@dataclass(frozen=True)
class Size:
    """The judge's shape, and the run's sizes."""

    hidden: int
    layers: int
    head_dim: int
    kv_heads: int
    intermediate: int
    vision_depth: int
    vision_hidden: int
    vision_intermediate: int
    image_size: int
    mrope_section: tuple[int, int, int]


FULL = Size(2048, 20, 128, 2, 5504, 8, 1280, 3456, 448, (16, 24, 24))
SMALL = Size(64, 2, 32, 1, 128, 1, 64, 128, 56, (2, 4, 10))
# The run's defaults. Full: enough steps for a steady rate on an H100; small: seconds on 2 cores.
FULL_RUN = {
    "steps": 30,
    "warmup": 5,
    "batch_size": 8,
    "grpo_steps": 5,
    "generations": 8,
    "completion_length": 128,
    "threads": 8,
}
SMALL_RUN = {
    "steps": 3,
    "warmup": 1,
    "batch_size": 2,
    "grpo_steps": 2,
    "generations": 2,
    "completion_length": 8,
    "threads": 1,
}


def training_flops(
    lm_params: int,
    vision_params: int,
    layers: int,
    attention_width: int,
    seq_lens: list[int],
    patches: int,
) -> float:
    """Model FLOPs of one training step (forward + backward), the MFU numerator.

    6 x lm_params per token (a multiply-add each way, backward twice the forward) plus causal
    attention's 12 x layers x width x s per token of a sequence of s tokens (QK^T and AV,
    forward and backward; the PaLM appendix's count), plus 6 x vision_params per vision patch.
    Recomputation under gradient checkpointing is not counted (MFU counts the model's FLOPs,
    not the hardware's). Shapes: seq_lens [batch] of tokens per example.

    >>> training_flops(1_000, 0, 2, 8, [10, 20], 0)  # 6*1000*30 + 12*2*8*(100 + 400)
    276000.0
    """
    tokens = sum(seq_lens)
    attention = 12 * layers * attention_width * sum(s * s for s in seq_lens)
    return float(6 * lm_params * tokens + attention + 6 * vision_params * patches)


# --------------------------------------------------------------------------- setup


def build(size: Size, work: Path) -> dict[str, Any]:
    """The random judge's checkpoint and a shapes-world dataset under `work`."""
    from unireward.data.shapes import ShapesConfig, generate
    from unireward.model.pretrain_base import tokenizer_corpus
    from unireward.model.tiny import TinyModelConfig, build_tiny, save_checkpoint

    cfg = TinyModelConfig(
        hidden_size=size.hidden,
        num_layers=size.layers,
        head_dim=size.head_dim,
        num_kv_heads=size.kv_heads,
        intermediate_size=size.intermediate,
        vision_depth=size.vision_depth,
        vision_hidden_size=size.vision_hidden,
        vision_intermediate_size=size.vision_intermediate,
        image_size=size.image_size,
        rope_theta=1_000_000.0,
        mrope_section=size.mrope_section,
    )
    model, processor = build_tiny(cfg, tokenizer_corpus(ShapesConfig(frames=4), 200))
    counts = {"lm": 0, "vision": 0}
    for name, param in model.named_parameters():
        counts["vision" if "visual." in name else "lm"] += param.numel()
    save_checkpoint(model, processor, work / "model")
    del model
    generate(
        ShapesConfig(seed=5, frames=4, train_per_task_mode=24, eval_per_task_mode=0), work / "data"
    )
    return {"parameters": counts, "model": str(work / "model"), "data": str(work / "data")}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- phases


def step_timer():
    """A TrainerCallback that records the wall time at the end of every step (CUDA
    synchronised first, so a step's kernels count in its own time)."""
    import torch
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.start = time.perf_counter()
            self.ends: list[float] = []

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.ends.append(time.perf_counter())

    return StepTimer()


def _timed(timer, warmup: int) -> tuple[int, float]:
    """(timed steps, their seconds): the steps after the first `warmup`."""
    ends = timer.ends
    if len(ends) <= warmup:
        raise RuntimeError(f"only {len(ends)} steps ran; {warmup} warm-up steps wanted")
    return len(ends) - warmup, ends[-1] - (ends[warmup - 1] if warmup else timer.start)


def sft_rows(data: Path):
    """unified_sft's training rows (every task and mode, swapped twins) and example stream."""
    from unireward.data.schema import read_records
    from unireward.judge.unified_sft import UnifiedSftConfig, expand, record_stream, select_records

    records = select_records(read_records(data), UnifiedSftConfig(tracking_uri="null"))
    return record_stream(expand(records, swap_augment=True), data, seed=0)


def example_tokens(processor, example: dict[str, Any]) -> tuple[int, int]:
    """(tokens, vision patches) of one SFT example: templated prompt + answer, image tokens in."""
    prompt = processor.apply_chat_template(
        example["prompt"], add_generation_prompt=True, tokenize=False
    )
    answer = example["completion"][0]["content"][0]["text"] + "<|im_end|>\n"
    inputs = processor(text=[prompt + answer], images=example["images"] or None)
    grid = inputs.get("image_grid_thw")
    patches = int(sum(int(t) * int(h) * int(w) for t, h, w in grid)) if grid is not None else 0
    return len(inputs["input_ids"][0]), patches


def run_sft(args: argparse.Namespace, info: dict[str, Any], zero2: bool) -> dict[str, Any]:
    import torch

    from unireward.training import ScaleParams, TrainParams, load_for_training, train_sft

    device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
    if zero2:
        if device != "cuda":
            return {
                "skipped": "ZeRO-2 needs CUDA (DeepSpeed's CPU path is tests/test_deepspeed.py)"
            }
        if importlib.util.find_spec("deepspeed") is None:
            return {"skipped": "deepspeed is not installed (make venv-deepspeed)"}
        # One process, no launcher: DeepSpeed still wants a process group's address.
        for key, value in (
            ("MASTER_ADDR", "127.0.0.1"),
            ("MASTER_PORT", str(free_port())),
            ("RANK", "0"),
            ("LOCAL_RANK", "0"),
            ("WORLD_SIZE", "1"),
        ):
            os.environ.setdefault(key, value)
    steps = args.warmup + args.steps
    params = TrainParams(
        max_steps=steps,
        batch_size=args.batch_size,
        learning_rate=1e-5,
        lr_scheduler="constant",
        warmup_ratio=0.0,
        save_steps=steps + 1,  # no checkpoint: the check times training, not writing 2 GB
        logging_steps=max(1, steps),
        threads=args.threads,
        device=device,
        deepspeed=str(ZERO2) if zero2 else "",
        scale=ScaleParams(precision="bf16", dtype="bfloat16", gradient_checkpointing=True),
    )
    model, processor = load_for_training(Path(info["model"]), params)
    stream = sft_rows(Path(info["data"]))
    timer = step_timer()
    out = Path(args.work) / ("zero2" if zero2 else "sft")
    outcome = train_sft(model, processor, stream, params, out, callbacks=[timer])
    timed, seconds = _timed(timer, args.warmup)
    first = args.warmup * args.batch_size
    rows = [stream.make(i) for i in range(first, first + timed * args.batch_size)]
    counted = [example_tokens(processor, row) for row in rows]
    seq_lens = [t for t, _ in counted]
    patches = sum(p for _, p in counted)
    size = FULL if not args.small else SMALL
    flops = training_flops(
        info["parameters"]["lm"],
        info["parameters"]["vision"],
        size.layers,
        size.hidden,
        seq_lens,
        patches,
    )
    achieved = flops / seconds
    return {
        "device": device,
        "zero_stage": outcome.zero_stage,
        "steps": timed,
        "seconds": seconds,
        "steps_per_s": timed / seconds,
        "tokens_per_s": sum(seq_lens) / seconds,
        "tokens_per_step": sum(seq_lens) / timed,
        "model_tflops_per_s": achieved / 1e12,
        "mfu": achieved / (args.peak_tflops * 1e12),
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None,
    }


def run_grpo(args: argparse.Namespace, info: dict[str, Any]) -> dict[str, Any]:
    import torch

    from unireward.data.schema import read_records, write_records
    from unireward.think.grpo import HARD, GrpoConfig, run
    from unireward.training import ScaleParams

    device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
    data = Path(info["data"])
    hard = [
        r
        for r in read_records(data)
        if r.mode == "pairwise"
        and r.task == "image_generation"
        and "equally" not in (r.label or "")
    ]
    samples = Path(args.work) / "samples"
    write_records(hard, samples / HARD)
    steps = args.warmup + args.grpo_steps
    config = GrpoConfig(
        num_generations=args.generations,
        max_completion_length=args.completion_length,
        prompts_per_step=1,
        max_steps=steps,
        save_steps=steps + 1,
        learning_rate=1e-6,
        threads=args.threads,
        device=device,
        scale=ScaleParams(precision="bf16", dtype="bfloat16", gradient_checkpointing=True),
        tracking_uri="null",
    )
    timer = step_timer()
    run(config, Path(info["model"]), samples, data, Path(args.work) / "grpo", callbacks=[timer])
    timed, seconds = _timed(timer, args.warmup)
    return {
        "device": device,
        "steps": timed,
        "seconds": seconds,
        "steps_per_s": timed / seconds,
        "completions_per_s": timed * args.generations / seconds,
        "generations": args.generations,
        "completion_length": args.completion_length,
    }


def run_phase(args: argparse.Namespace) -> None:
    """`--phase NAME` (the parent runs each in a subprocess): result JSON to `--result`."""
    info = json.loads((Path(args.work) / "setup.json").read_text())
    if args.phase == "grpo":
        result = run_grpo(args, info)
    else:
        result = run_sft(args, info, zero2=args.phase == "zero2")
    Path(args.result).write_text(json.dumps(result))


# --------------------------------------------------------------------------- driver


def environment() -> dict[str, Any]:
    import torch

    env: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        env.update(gpu=torch.cuda.get_device_name(0), gpus=torch.cuda.device_count())
    if importlib.util.find_spec("deepspeed") is not None:
        import deepspeed

        env["deepspeed"] = deepspeed.__version__
    return env


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="tiny model, a few steps (CPU)")
    parser.add_argument("--cpu", action="store_true", help="stay on the CPU even with CUDA")
    parser.add_argument("--peak-tflops", type=float, default=H100_BF16_DENSE_TFLOPS)
    parser.add_argument("--steps", type=int, default=None, help="timed SFT steps")
    parser.add_argument("--warmup", type=int, default=None, help="untimed first steps")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--grpo-steps", type=int, default=None)
    parser.add_argument("--generations", type=int, default=None, help="GRPO group size")
    parser.add_argument("--completion-length", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--phases", default=",".join(PHASES))
    parser.add_argument("--phase-timeout", type=float, default=300.0, help="seconds per phase")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--work", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--phase", choices=PHASES, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    defaults = SMALL_RUN if args.small else FULL_RUN
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    unknown = set(args.phases.split(",")) - set(PHASES)
    if unknown:
        parser.error(f"--phases: unknown {sorted(unknown)}; choose from {PHASES}")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    if args.phase:
        run_phase(args)
        return {}
    start = time.perf_counter()
    work = Path(args.work or tempfile.mkdtemp(prefix="unireward-gpu-check-"))
    info = build(SMALL if args.small else FULL, work)
    (work / "setup.json").write_text(json.dumps(info))
    n = sum(info["parameters"].values())
    print(
        f"judge: {n / 1e9:.2f} B parameters {info['parameters']} (built in "
        f"{time.perf_counter() - start:.0f} s)",
        flush=True,
    )
    report: dict[str, Any] = {
        "parameters": info["parameters"],
        "environment": environment(),
        "peak_tflops": args.peak_tflops,
        "small": args.small,
    }
    for phase in args.phases.split(","):
        result_path = work / f"{phase}.json"
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            *_forward(args),
            "--work",
            str(work),
            "--phase",
            phase,
            "--result",
            str(result_path),
        ]
        t = time.perf_counter()
        try:
            done = subprocess.run(
                command, timeout=args.phase_timeout, capture_output=True, text=True
            )
            if done.returncode == 0:
                report[phase] = json.loads(result_path.read_text())
            else:
                report[phase] = {"error": done.stderr.strip().splitlines()[-12:]}
        except subprocess.TimeoutExpired:
            report[phase] = {"error": f"ran past --phase-timeout {args.phase_timeout:.0f} s"}
        report[phase]["wall_s"] = time.perf_counter() - t
        print(f"{phase}: {json.dumps(report[phase])}", flush=True)
    report["total_s"] = time.perf_counter() - start
    print(summary(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


def _forward(args: argparse.Namespace) -> list[str]:
    """The options a phase subprocess needs, as resolved here."""
    out = ["--small"] if args.small else []
    out += ["--cpu"] if args.cpu else []
    for key in (
        "peak_tflops",
        "steps",
        "warmup",
        "batch_size",
        "grpo_steps",
        "generations",
        "completion_length",
        "threads",
    ):
        out += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    return out


def summary(report: dict[str, Any]) -> str:
    lines = [
        f"gpu check ({report['environment'].get('gpu', 'no GPU')}, "
        f"{report['total_s']:.0f} s in all):"
    ]
    for phase in ("sft", "zero2"):
        r = report.get(phase)
        if r is None:
            continue
        if "steps_per_s" in r:
            lines.append(
                f"  {phase:5s} {r['steps_per_s']:7.2f} steps/s  {r['tokens_per_s']:9.0f} tokens/s"
                f"  {r['model_tflops_per_s']:7.2f} TFLOP/s  MFU {100 * r['mfu']:.1f}%"
            )
        else:
            lines.append(f"  {phase:5s} {r.get('skipped') or r.get('error')}")
    r = report.get("grpo")
    if r is not None:
        lines.append(
            f"  grpo  {r['steps_per_s']:7.3f} steps/s  {r['completions_per_s']:.1f} completions/s"
            if "steps_per_s" in r
            else f"  grpo  {r.get('error')}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
