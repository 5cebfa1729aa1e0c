"""Soak: the served judge under minutes of mixed traffic on loopback, and what it cost.

    make bench-soak             # = python bench/soak_bench.py --minutes 5 --concurrency 8
    python bench/soak_bench.py --minutes 1 --json build/bench-soak.json

One vLLM server (`unireward.serving.serve`, the shipped models/base-tiny unless `--model`),
`--concurrency` client threads, each sending one request at a time until `--minutes` have
passed. Each request is drawn (seeded) from a mix of what the judge's users send:

- pair:    a pairwise judgement, any of the 4 tasks (shapes-world records, the contract's
           wording, greedy), as the reward client sends it;
- score:   a pointwise score, any of the 4 tasks;
- bad:     a request the server must refuse with a 4xx (a wrong key, bad base64, a URL of
           another host, no messages);
- models:  GET /v1/models.

Measured: every request's status and latency (none lost: each is answered, refused or
counted as an error with its reason); p50 / p95 / p99 latency of the judgements, over the
whole run and in its first and last minute (the ratio last / first is the degradation: the
baseline is the same run's first minute); the server's resident memory (the sum over its
process group: API server and engine core) sampled every 5 s, from after the warm-up to the
end, and its growth. Unexpected outcomes: a 5xx, a timeout, a refused connection, a 2xx to a
bad request or a 4xx to a good one.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEY_ENV = "UNIREWARD_BENCH_SOAK_KEY"
MIX = {"pair": 0.5, "score": 0.25, "bad": 0.15, "models": 0.1}


@dataclass
class Outcome:
    kind: str
    started: float  # seconds since the soak began
    latency_s: float
    status: int  # HTTP status; 0 = no answer (timeout, connection error)
    error: str | None  # set for every unexpected outcome


def build_bodies(root: Path) -> dict[str, list[dict]]:
    """Chat bodies for every pairwise and pointwise record of a small shapes world."""
    from unireward.data.schema import read_records
    from unireward.data.shapes import ShapesConfig, generate
    from unireward.serving.client import (
        PairQuery,
        pair_messages,
        query_from_record,
        score_messages,
    )

    generate(ShapesConfig(seed=12, frames=4, train_per_task_mode=40, eval_per_task_mode=0), root)
    bodies: dict[str, list[dict]] = {"pair": [], "score": []}
    for record in read_records(root):
        q = query_from_record(record, root)
        if isinstance(q, PairQuery):
            bodies["pair"].append({"messages": pair_messages(q), "max_tokens": 16})
        else:
            bodies["score"].append({"messages": score_messages(q), "max_tokens": 8})
    return bodies


def bad_requests(good: dict, key: str) -> list[tuple[dict, str]]:
    """(body, key) pairs the server must refuse with a 4xx."""
    text = [p for p in good["messages"][0]["content"] if p["type"] == "text"]
    broken = {"type": "image_url", "image_url": {"url": "data:image/png;base64,%%%notbase64"}}
    remote = {"type": "image_url", "image_url": {"url": "http://example.com/a.png"}}
    return [
        (good, "not-the-key"),
        ({"messages": [{"role": "user", "content": [*text, broken]}], "max_tokens": 4}, key),
        ({"messages": [{"role": "user", "content": [*text, remote]}], "max_tokens": 4}, key),
        ({"max_tokens": 4}, key),
    ]


def rss_bytes(pgid: int) -> int:
    """Resident memory of every process in process group `pgid` (Linux /proc)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) == pgid:  # field 5 of stat: the process group
                total += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")  # field 24: rss pages
        except (OSError, ValueError, IndexError):
            continue  # the process ended while we looked
    return total


def quantiles(latencies: list[float]) -> dict[str, float | None]:
    if len(latencies) < 2:
        return {"p50_s": None, "p95_s": None, "p99_s": None}
    q = statistics.quantiles(latencies, n=100)
    return {"p50_s": q[49], "p95_s": q[94], "p99_s": q[98]}


def soak(server, key: str, bodies: dict, seconds: float, concurrency: int, seed: int):
    import requests

    url = server.base_url + "/chat/completions"
    bad = bad_requests(bodies["pair"][0], key)
    kinds, weights = list(MIX), list(MIX.values())
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    t0 = time.perf_counter()

    def one(kind: str, rng: random.Random) -> Outcome:
        started = time.perf_counter() - t0
        headers = {"Authorization": f"Bearer {key}"}
        try:
            if kind == "models":
                r = requests.get(server.base_url + "/models", headers=headers, timeout=60)
            else:
                if kind == "bad":
                    body, k = rng.choice(bad)
                    headers = {"Authorization": f"Bearer {k}"}
                else:
                    body = rng.choice(bodies[kind])
                body = {"model": server.served_model_name, "temperature": 0.0, **body}
                r = requests.post(url, json=body, headers=headers, timeout=60)
            status = r.status_code
            ok = 400 <= status < 500 if kind == "bad" else 200 <= status < 300
            error = None if ok else f"{kind}: HTTP {status}: {r.text[:120]}"
        except requests.RequestException as err:
            status, error = 0, f"{type(err).__name__}: {str(err)[:120]}"
        return Outcome(kind, started, time.perf_counter() - t0 - started, status, error)

    def worker(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        while time.perf_counter() - t0 < seconds:
            outcome = one(rng.choices(kinds, weights)[0], rng)
            with lock:
                outcomes.append(outcome)

    memory: list[tuple[float, int]] = []
    done = threading.Event()

    def sample_memory() -> None:
        pgid = os.getpgid(server.process.pid)
        while not done.is_set():
            memory.append((time.perf_counter() - t0, rss_bytes(pgid)))
            done.wait(5.0)

    sampler = threading.Thread(target=sample_memory, daemon=True)
    sampler.start()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    sampler.join()
    memory.append((time.perf_counter() - t0, rss_bytes(os.getpgid(server.process.pid))))
    return outcomes, memory, time.perf_counter() - t0


def summarise(
    outcomes: list[Outcome], memory: list[tuple[float, int]], seconds: float, wall: float
) -> dict:
    """Counts, latency quantiles (whole run; requests started in its first and in its last
    `window_s`) and the server's memory over the run."""
    judged = [o for o in outcomes if o.kind in ("pair", "score") and o.error is None]
    window = min(60.0, seconds / 3)
    first = [o.latency_s for o in judged if o.started < window]
    last = [o.latency_s for o in judged if o.started >= seconds - window]
    statuses: dict[str, int] = {}
    for o in outcomes:
        statuses[str(o.status)] = statuses.get(str(o.status), 0) + 1
    errors: dict[str, int] = {}
    for o in outcomes:
        if o.error is not None:
            errors[o.error[:80]] = errors.get(o.error[:80], 0) + 1
    mib = [m / 2**20 for _, m in memory]
    first_q, last_q = quantiles(first), quantiles(last)
    ratio = last_q["p50_s"] / first_q["p50_s"] if first_q["p50_s"] and last_q["p50_s"] else None
    return {
        "wall_s": wall,
        "requests": len(outcomes),
        "by_kind": {k: sum(o.kind == k for o in outcomes) for k in MIX},
        "statuses": statuses,
        "unexpected": sum(o.error is not None for o in outcomes),
        "errors": errors,
        "judgements": len(judged),
        "judgements_per_s": len(judged) / wall,
        "latency": quantiles([o.latency_s for o in judged]),
        "latency_first_window": first_q,
        "latency_last_window": last_q,
        "window_s": window,
        "p50_last_over_first": ratio,
        "rss_mib_start": mib[0] if mib else None,
        "rss_mib_max": max(mib) if mib else None,
        "rss_mib_end": mib[-1] if mib else None,
        "rss_growth_mib": mib[-1] - mib[0] if mib else None,
        "rss_samples": len(mib),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "base-tiny")
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vllm-python", default=str(ROOT / ".venv-serve" / "bin" / "python"))
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args(argv)

    import requests

    from unireward.serving import serve

    os.environ[KEY_ENV] = key = secrets.token_urlsafe(24)  # this run only, never written
    with tempfile.TemporaryDirectory(prefix="unireward-bench-soak-") as tmp:
        bodies = build_bodies(Path(tmp) / "data")
        print(f"{len(bodies['pair'])} pair and {len(bodies['score'])} score bodies", flush=True)
        config = serve.ServeConfig(
            api_key_env=KEY_ENV, vllm_python=args.vllm_python, max_num_seqs=64
        )
        with serve.run(config, Path(tmp) / "serve", model_dir=args.model) as server:
            print(f"vLLM ready at {server.base_url}; warming up", flush=True)
            for body in bodies["pair"][:4] + bodies["score"][:4]:  # compile / cache warm-up
                requests.post(
                    server.base_url + "/chat/completions",
                    json={"model": server.served_model_name, **body},
                    headers={"Authorization": f"Bearer {key}"},
                    timeout=120,
                ).raise_for_status()
            outcomes, memory, wall = soak(
                server, key, bodies, args.minutes * 60, args.concurrency, args.seed
            )
            alive = server.alive()
    result = summarise(outcomes, memory, args.minutes * 60, wall) | {
        "model": str(args.model),
        "minutes": args.minutes,
        "concurrency": args.concurrency,
        "cpus": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
        "server_alive_after": alive,
    }
    lat = result["latency"]
    print(
        f"\nsoak: {result['requests']} requests in {wall:.0f} s ({args.concurrency} clients, "
        f"{os.cpu_count()} CPUs), {result['unexpected']} unexpected {result['errors'] or ''}"
    )
    print(f"  statuses {result['statuses']}; server alive after: {alive}")
    print(
        f"  judgements {result['judgements']} ({result['judgements_per_s']:.1f}/s): "
        f"p50 {lat['p50_s'] or 0:.3f} s, p95 {lat['p95_s'] or 0:.3f} s, "
        f"p99 {lat['p99_s'] or 0:.3f} s"
    )
    if result["p50_last_over_first"] is not None:
        print(
            f"  p50 in the last {result['window_s']:.0f} s / the first: "
            f"x{result['p50_last_over_first']:.2f}"
        )
    print(
        f"  server RSS {result['rss_mib_start']:.0f} MiB after warm-up -> "
        f"{result['rss_mib_end']:.0f} MiB at the end (max {result['rss_mib_max']:.0f}; "
        f"growth {result['rss_growth_mib']:+.0f} MiB over {result['rss_samples']} samples)"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["unexpected"] == 0 and alive else 1


if __name__ == "__main__":
    sys.exit(main())
