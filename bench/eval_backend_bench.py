"""Benchmark: evaluation judgements/s of `evaluate`'s two backends, batched transformers
`generate` vs vLLM's offline engine, on the same ~100M-parameter random Qwen2.5-VL judge and
the same prompts, in one run on this machine.

    make bench-eval      # = python bench/eval_backend_bench.py --prompts 64 --repeats 3 \
                         #       --json build/bench-eval.json
    python bench/eval_backend_bench.py --prompts 16 --repeats 1 --size 256:4   # quick look

- the judge: `model.tiny` helpers at `--size HIDDEN:LAYERS` (default 768:14, head_dim 64,
  intermediate 3x hidden, vision depth 4 x 256: ~100M parameters), random weights, the
  project's tokenizer, saved as safetensors; nothing downloaded;
- the prompts: `--prompts` image-generation pairwise judgements of the shapes world in
  evaluate's own wording (`judge.examples.prompt_messages`, two 56 px images each), greedy,
  at most `--max-new-tokens` new tokens (a random judge rarely stops early: both backends
  write about the same number of tokens, and they are counted);
- generate: `judge.infer.generate_texts` (evaluate's `generate` backend), `--batch-size`
  prompts per call, `--generate-threads` torch threads, the model loaded once before timing;
- vllm: `serving.offline.generate` (evaluate's `vllm` backend): one engine per repeat in
  .venv-serve (`make serve-venv`), every prompt at once. Its rate counts writing the images,
  the engine reading them and generating; the engine's start-up is reported apart
  (`startup_s`) and in `judgements_per_s_with_startup`.

vLLM runs once per `--vllm-dtypes` entry: float32 computes exactly the model `generate` runs
(float32), bfloat16 is vLLM's CPU default; how often each wrote generate's text is reported.
Medians over `--repeats`, ratios vs generate, the machine's load average (other work on the
cores slows every method).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_model(spec: str, out_dir: Path) -> tuple[Path, int]:
    """A random-weight Qwen2.5-VL `HIDDEN:LAYERS` (head_dim 64) -> (checkpoint, parameters)."""
    from unireward.data.shapes import ShapesConfig
    from unireward.model.pretrain_base import tokenizer_corpus
    from unireward.model.tiny import TinyModelConfig, build_tiny, save_checkpoint

    hidden, layers = (int(x) for x in spec.split(":"))
    head_dim = 64 if hidden % 64 == 0 else 32
    cfg = TinyModelConfig(
        hidden_size=hidden,
        num_layers=layers,
        head_dim=head_dim,
        num_kv_heads=4 if (hidden // head_dim) % 4 == 0 else 1,
        intermediate_size=3 * hidden,
        vision_depth=4,
        vision_hidden_size=256,
        vision_intermediate_size=1024,
        rope_theta=10_000.0,
        mrope_section=(head_dim // 8, 3 * head_dim // 16, 3 * head_dim // 16),
    )
    model, processor = build_tiny(cfg, tokenizer_corpus(ShapesConfig(frames=4), 200))
    n = sum(p.numel() for p in model.parameters())
    return save_checkpoint(model, processor, out_dir), n


def build_prompts(n: int, root: Path):
    """n (messages, images) image-generation pairwise prompts, evaluate's wording."""
    from unireward.data.schema import read_records
    from unireward.data.shapes import ShapesConfig, generate
    from unireward.judge.examples import prompt_messages, record_images

    generate(ShapesConfig(seed=21, frames=4, train_per_task_mode=n, eval_per_task_mode=0), root)
    records = [
        r for r in read_records(root) if r.task == "image_generation" and r.mode == "pairwise"
    ][:n]
    assert len(records) == n, f"{len(records)} pairs generated, {n} wanted"
    return [(prompt_messages(r), record_images(r, root)) for r in records]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="768:14", metavar="HIDDEN:LAYERS")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--generate-threads", type=int, default=1)
    parser.add_argument(
        "--vllm-dtypes",
        default="float32,bfloat16",
        help="vLLM runs, one per dtype: float32 is the model generate runs; bfloat16 is vLLM's "
        "CPU default",
    )
    parser.add_argument("--vllm-python", default=str(ROOT / ".venv-serve" / "bin" / "python"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch

    from unireward.judge.infer import generate_texts
    from unireward.model.tiny import load_checkpoint
    from unireward.serving import offline

    offline.require_vllm(args.vllm_python, "bench-eval")
    torch.set_num_threads(args.generate_threads)
    work = Path(tempfile.mkdtemp(prefix="unireward-bench-eval-"))
    model_dir, n_params = build_model(args.size, work / "model")
    print(f"random judge {args.size}: {n_params / 1e6:.1f} M parameters", flush=True)
    prompts = build_prompts(args.prompts, work / "data")

    model, processor = load_checkpoint(model_dir)
    tokenizer = processor.tokenizer
    generate_texts(model, processor, prompts[:2], max_new_tokens=2, batch_size=2)  # warm-up
    gen_s, gen_texts = [], []
    for rep in range(args.repeats):
        start = time.perf_counter()
        gen_texts = generate_texts(
            model,
            processor,
            prompts,
            max_new_tokens=args.max_new_tokens,
            batch_size=args.batch_size,
        )
        gen_s.append(time.perf_counter() - start)
        print(f"repeat {rep + 1}: generate {gen_s[-1]:.1f} s", flush=True)
    del model

    vllm: dict[str, dict[str, list]] = {}
    for dtype in args.vllm_dtypes.split(","):
        params = offline.EngineParams(vllm_python=args.vllm_python, dtype=dtype)
        requests = [offline.Request(p, max_tokens=args.max_new_tokens) for p in prompts]
        runs: dict[str, list] = {"seconds": [], "startup_s": [], "texts": []}
        for rep in range(args.repeats):
            result = offline.generate(model_dir, requests, params, work / f"vllm-{dtype}-{rep}")
            runs["seconds"].append(result.prepare_s + result.generate_s)
            runs["startup_s"].append(result.load_s)
            runs["texts"] = [t[0] for t in result.texts]
            print(
                f"repeat {rep + 1}: vllm {dtype} {runs['seconds'][-1]:.1f} s "
                f"(engine start-up {result.load_s:.1f} s)",
                flush=True,
            )
        vllm[dtype] = runs

    def tokens(texts: list[str]) -> int:
        return sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)

    n = args.prompts
    rate = {"generate": n / statistics.median(gen_s)}
    with_startup, same, new_tokens = {}, {}, {"generate": tokens(gen_texts)}
    for dtype, runs in vllm.items():
        name = f"vllm_{dtype}"
        rate[name] = n / statistics.median(runs["seconds"])
        totals = [s + u for s, u in zip(runs["seconds"], runs["startup_s"], strict=True)]
        with_startup[name] = n / statistics.median(totals)
        same[name] = sum(a == b for a, b in zip(gen_texts, runs["texts"], strict=True)) / n
        new_tokens[name] = tokens(runs["texts"])
    report = {
        "model": f"random Qwen2.5-VL {args.size}",
        "parameters": n_params,
        "prompts": n,
        "repeats": args.repeats,
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
        "generate_threads": args.generate_threads,
        "generate_dtype": "float32",
        "cpus": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
        "seconds": {"generate": gen_s, **{f"vllm_{d}": r["seconds"] for d, r in vllm.items()}},
        "vllm_startup_s": {f"vllm_{d}": r["startup_s"] for d, r in vllm.items()},
        "judgements_per_s": rate,
        "judgements_per_s_with_startup": with_startup,
        "ratio_vs_generate": {k: v / rate["generate"] for k, v in rate.items()},
        "new_tokens_retokenized": new_tokens,
        "same_text_as_generate": same,
    }
    print()
    print(
        f"judgements/s (median of {args.repeats}, {n} prompts, {n_params / 1e6:.0f} M params, "
        f"{os.cpu_count()} CPUs, load {report['load_average_1m']:.1f}):"
    )
    for name, value in rate.items():
        extra = ""
        if name in with_startup:
            extra = f"  (with start-up {with_startup[name]:.2f} /s; same text {same[name]:.0%})"
        print(f"  {name:16s} {value:8.2f} /s  x{report['ratio_vs_generate'][name]:.2f}{extra}")
    best = max((v for k, v in report["ratio_vs_generate"].items() if k != "generate"), default=0)
    print(f"goal >= 5x batched generate: {'met' if best >= 5 else 'NOT met'} (best x{best:.2f})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
