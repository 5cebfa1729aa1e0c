"""vLLM's offline engine (`vllm.LLM(...).generate`) over a JSONL of prompts: the worker half of
`unireward.serving.offline`, run in vLLM's own venv (`make serve-venv`), never imported by the
project (vLLM pins its own torch and transformers; see the Makefile).

    .venv-serve/bin/python -P src/unireward/serving/vllm_offline_worker.py SPEC.json

Imports only the standard library, PIL and vLLM (`-P`: this file's directory stays off
sys.path, so no sibling module can shadow one of vLLM's). SPEC.json (written by `offline.py`):

    {"model": DIR, "requests": IN.jsonl, "outputs": OUT.jsonl, "stats": STATS.json,
     "engine": {LLM keyword arguments}}

IN.jsonl, one prompt per line: `{"prompt": chat-templated text, "images": [PNG paths],
"n", "temperature", "max_tokens", "min_tokens"}`. OUT.jsonl, line i for prompt i: `{"texts":
[n completions in vLLM's index order]}`. STATS.json: `{"load_s", "generate_s"}` (engine
start-up with a one-token warm-up; reading the images and generating). The code runs under
`__main__` only: vLLM's CPU engine starts worker processes that re-import the main module.
"""

import json
import sys
import time
from pathlib import Path


def main(spec_path: str) -> None:
    from PIL import Image
    from vllm import LLM, SamplingParams

    spec = json.loads(Path(spec_path).read_text())
    start = time.perf_counter()
    llm = LLM(model=spec["model"], tokenizer=spec["model"], **spec["engine"])
    # One text-only token first: the engine's first step pays one-off costs (compiled graphs
    # for new shapes, allocator growth) that belong to start-up, not to the prompts.
    llm.generate([{"prompt": "warm-up"}], SamplingParams(max_tokens=1), use_tqdm=False)
    load_s = time.perf_counter() - start

    start = time.perf_counter()
    prompts, params = [], []
    with open(spec["requests"]) as fh:
        for line in fh:
            request = json.loads(line)
            prompt = {"prompt": request["prompt"]}
            if request["images"]:
                images = []
                for path in request["images"]:
                    with Image.open(path) as img:
                        images.append(img.convert("RGB"))
                prompt["multi_modal_data"] = {"image": images}
            prompts.append(prompt)
            params.append(
                SamplingParams(
                    n=request["n"],
                    temperature=request["temperature"],
                    max_tokens=request["max_tokens"],
                    min_tokens=request["min_tokens"],
                )
            )
    outputs = llm.generate(prompts, params, use_tqdm=False)
    generate_s = time.perf_counter() - start

    with open(spec["outputs"], "w") as fh:
        for output in outputs:  # in prompt order
            texts = [c.text for c in sorted(output.outputs, key=lambda c: c.index)]
            fh.write(json.dumps({"texts": texts}) + "\n")
    Path(spec["stats"]).write_text(json.dumps({"load_s": load_s, "generate_s": generate_s}))


if __name__ == "__main__":
    main(sys.argv[1])
