"""cold_start: the teacher interface against a real chat-completions server on loopback (retries,
timeouts, 500s, malformed text, the failure threshold, the concurrency bound), the correctness
filter, and the stage on a tiny model (parameters change, artifacts written, resume == straight).

    .venv/bin/pytest tests/test_cold_start.py -q
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import TrainerCallback

from mlflow_store import logged_artifacts
from unireward.config import from_dict
from unireward.data.schema import read_records
from unireward.data.teacher import teacher_cot
from unireward.prompt_templates import PROMPTS_FILE, default_templates
from unireward.rewards import is_correct
from unireward.think.cold_start import (
    DISTILL,
    ColdStartConfig,
    TeacherFailures,
    distill,
    run,
    run_distillation,
    select_items,
)
from unireward.think.teachers import make_teacher
from unireward.tracking import default_tracking_uri
from unireward.training import CHECKPOINTS, latest_checkpoint

# --------------------------------------------------------------------------- a scripted server

Action = Callable[[dict], tuple[int, str | None, float]]  # request -> (status, text, delay)


def reply(text: str) -> Action:
    return lambda body: (200, text, 0.0)


def status(code: int) -> Action:
    return lambda body: (code, None, 0.0)


def hang(seconds: float) -> Action:
    return lambda body: (200, "too late", seconds)


class ScriptedServer:
    """An OpenAI-compatible `/v1/chat/completions` on 127.0.0.1 answering call k with
    `script[k]` (the last action repeats); records every request body, header and concurrency."""

    def __init__(self, script: list[Action]) -> None:
        self.script = script
        self.requests: list[dict] = []
        self.auth: list[str | None] = []
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def do_POST(self) -> None:  # http.server's handler name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    k = len(server.requests)
                    server.requests.append(body)
                    server.auth.append(self.headers.get("Authorization"))
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    code, text, delay = server.script[min(k, len(server.script) - 1)](body)
                    time.sleep(delay)
                    self._send(code, text, body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout): that is the point
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def _send(self, code: int, text: str | None, body: dict) -> None:
                if code == 200:
                    payload = {
                        "id": "chatcmpl-test",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body["model"],
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": text},
                                "finish_reason": "stop",
                            }
                        ],
                    }
                else:
                    payload = {"error": {"message": f"scripted {code}", "type": "server_error"}}
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[[list[Action]], ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(script: list[Action]) -> ScriptedServer:
        servers.append(ScriptedServer(script).__enter__())
        return servers[-1]

    yield start
    for s in servers:
        s.__exit__(None, None, None)


def _openai_config(url: str, **kw) -> ColdStartConfig:
    teacher = {
        "kind": "openai",
        "base_url": url,
        "model": "teacher-vlm",
        "api_key_env": "",
        "timeout_s": 0.5,
        "max_retries": 2,
        "backoff_s": 0.01,
        "max_concurrency": 1,
        **kw.pop("teacher", {}),
    }
    base = {"tasks": ["image_generation", "image_understanding"], "max_items_per_task": 2}
    return from_dict(ColdStartConfig, {**base, **kw, "teacher": teacher, "tracking_uri": "null"})


def _outputs(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / DISTILL / "teacher_outputs.jsonl").open()]


def _script(items) -> list[Action]:
    """8 items, 13 calls: 500, 500 then right; 3 timeouts; malformed; wrong; 4 right."""
    right = [reply(teacher_cot(r, np.random.default_rng(0), 0.0)) for r in items]
    wrong = reply(teacher_cot(items[3], np.random.default_rng(0), 1.0))
    return [
        status(500),
        status(503),
        right[0],
        hang(2.0),
        hang(2.0),
        hang(2.0),
        reply("Image 1 is better"),
        wrong,
        *right[4:],
    ]


def test_openai_teacher_retries_records_failures_and_continues(
    serve, shapes_dataset: Path, tmp_path: Path
) -> None:
    config = _openai_config("", max_failed_fraction=0.3)
    items = select_items(read_records(shapes_dataset), config)
    assert len(items) == 8  # 2 tasks x 2 records x both orders
    server = serve(_script(items))
    config = _openai_config(server.url, max_failed_fraction=0.3)

    summary, kept = run_distillation(config, shapes_dataset, tmp_path)

    assert len(server.requests) == 3 + 3 + 1 + 1 + 4
    outcomes = _outputs(tmp_path)
    assert [o["status"] for o in outcomes] == ["kept", "failed", "failed", "rejected"] + [
        "kept"
    ] * 4
    assert "timeout" in outcomes[1]["reason"] and "after 3 attempts" in outcomes[1]["reason"]
    assert outcomes[2]["reason"].startswith("malformed") and outcomes[2]["text"]
    assert "but the label is" in outcomes[3]["reason"]
    assert [o["id"] for o in outcomes] == [r.id for r in items]  # nothing lost
    assert summary["failed_fraction"] == pytest.approx(2 / 8)
    assert summary["rejected_fraction"] == pytest.approx(1 / 6)
    assert len(kept) == 5 and all(is_correct(r.cot, r.label) for r in kept)
    assert len(read_records(tmp_path / DISTILL)) == 5
    # The request is the judge's CoT prompt with the frames as PNG data URLs.
    first = server.requests[0]
    parts = first["messages"][0]["content"]
    images = [p for p in parts if p["type"] == "image_url"]
    assert first["model"] == "teacher-vlm" and len(images) == len(items[0].media)
    assert all(p["image_url"]["url"].startswith("data:image/png;base64,") for p in images)
    assert "<think>" in parts[-1]["text"]


def test_past_the_failure_threshold_the_stage_fails_after_writing_everything(
    serve, shapes_dataset: Path, tmp_path: Path
) -> None:
    config = _openai_config("")
    server = serve(_script(select_items(read_records(shapes_dataset), config)))
    config = _openai_config(server.url, max_failed_fraction=0.1)
    with pytest.raises(TeacherFailures, match=r"2 of 8 teacher items failed \(25\.0% > .*timeout"):
        run_distillation(config, shapes_dataset, tmp_path)
    assert len(_outputs(tmp_path)) == 8
    assert json.loads((tmp_path / DISTILL / "summary.json").read_text())["passed"] is False


def test_client_errors_are_not_retried_and_the_key_comes_from_the_env(
    serve, shapes_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve([status(400)])
    monkeypatch.setenv("UNIREWARD_TEST_TEACHER_KEY", "sk-test")
    config = _openai_config(
        server.url,
        max_failed_fraction=1.0,
        teacher={"api_key_env": "UNIREWARD_TEST_TEACHER_KEY"},
        max_items_per_task=1,
        tasks=["video_understanding"],
    )
    with pytest.raises(ValueError, match="the teacher got no item right"):
        run_distillation(config, shapes_dataset, tmp_path)
    summary = json.loads((tmp_path / DISTILL / "summary.json").read_text())
    assert len(server.requests) == 2 and summary["failed"] == 2  # one call per item, no retry
    assert _outputs(tmp_path)[0]["reason"].startswith("HTTP 400")
    assert set(server.auth) == {"Bearer sk-test"}
    monkeypatch.delenv("UNIREWARD_TEST_TEACHER_KEY")
    with pytest.raises(ValueError, match=r"UNIREWARD_TEST_TEACHER_KEY.*unset"):
        run_distillation(config, shapes_dataset, tmp_path / "again")


def test_requests_in_flight_stay_within_max_concurrency(
    serve, shapes_dataset: Path, tmp_path: Path
) -> None:
    server = serve([lambda body: (200, "not a judgement", 0.2)])
    config = _openai_config(server.url, teacher={"max_concurrency": 2}, max_failed_fraction=1.0)
    items = select_items(read_records(shapes_dataset), config)
    result = distill(make_teacher(config.teacher), items, shapes_dataset, max_concurrency=2)
    assert len(result.outcomes) == 8 and {o.status for o in result.outcomes} == {"failed"}
    assert server.max_in_flight == 2


# --------------------------------------------------------------------------- the filter


def test_correctness_filter_rejects_wrong_teacher_verdicts(
    shapes_dataset: Path, tmp_path: Path
) -> None:
    config = from_dict(ColdStartConfig, {"teacher": {"error_rate": 0.5}, "tracking_uri": "null"})
    summary, kept = run_distillation(config, shapes_dataset, tmp_path)
    outcomes = _outputs(tmp_path)
    assert summary["items"] == len(outcomes) == 4 * 4 * 2  # tasks x records x orders
    rejected = [o for o in outcomes if o["status"] == "rejected"]
    assert 0 < len(rejected) < len(outcomes) and summary["failed"] == 0
    assert all(not is_correct(o["text"], o["label"]) for o in rejected)
    assert all(is_correct(r.cot, r.label) for r in kept)
    assert summary["rejected_fraction"] == pytest.approx(len(rejected) / len(outcomes))


def test_an_error_free_teacher_is_right_in_both_orders(
    shapes_dataset: Path, tmp_path: Path
) -> None:
    config = from_dict(ColdStartConfig, {"teacher": {"error_rate": 0.0}, "tracking_uri": "null"})
    summary, kept = run_distillation(config, shapes_dataset, tmp_path)
    assert summary["kept"] == summary["items"] == len(kept) == 32
    labels = {r.id: r.label for r in kept}
    for r in kept:
        if r.id.endswith("-swapped"):
            assert labels[r.id.removesuffix("-swapped")] != r.label


# --------------------------------------------------------------------------- the stage

TINY_TRAIN = {"max_steps": 4, "batch_size": 2, "save_steps": 2, "logging_steps": 1, "seed": 0}


def _tiny_config(**kw) -> ColdStartConfig:
    base = {"train": TINY_TRAIN, "max_items_per_task": 2, "tracking_uri": "null"}
    return from_dict(ColdStartConfig, {**base, **kw})


def test_run_changes_parameters_and_writes_artifacts(
    tiny_model_dir: Path, shapes_dataset: Path, tmp_path: Path
) -> None:
    uri = default_tracking_uri(tmp_path / "store")
    result = run(_tiny_config(tracking_uri=uri), tiny_model_dir, shapes_dataset, tmp_path / "think")
    out = tmp_path / "think"
    before = load_file(tiny_model_dir / "model.safetensors")
    after = load_file(out / "model.safetensors")
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) > len(before) // 2
    info = json.loads((out / "unireward.json").read_text())
    assert info["stage"] == "cold_start" and info["global_step"] == 4
    assert info["judge"] == str(tiny_model_dir)
    assert info["distillation"]["items"] == result.items == 16
    assert result.kept == len(read_records(out / DISTILL)) > 0
    assert {"teacher_outputs.jsonl", "summary.json", "records.parquet"} <= {
        p.name for p in (out / DISTILL).iterdir()
    }
    assert not (out / CHECKPOINTS).exists()
    losses = [h["loss"] for h in json.loads((out / "train_log.json").read_text()) if "loss" in h]
    assert losses and all(loss == loss for loss in losses)
    logged = logged_artifacts(uri, "cold_start")
    assert {"plots/train_curves.png", "train_log.json", f"{DISTILL}/summary.json"} <= logged
    # The judge carries the prompts it was trained on, and the run logs them.
    assert (out / PROMPTS_FILE).read_text() == default_templates().text and PROMPTS_FILE in logged


def test_init_base_trains_the_base_and_init_judge_the_judge(
    tiny_model_dir: Path, shapes_dataset: Path, tmp_path: Path
) -> None:
    """Four small steps move each weight by ~1e-3; the judge differs from the base by 1.0."""
    judge = tmp_path / "judge"
    shutil.copytree(tiny_model_dir, judge)
    base_weights = load_file(tiny_model_dir / "model.safetensors")
    save_file({k: v + 1.0 for k, v in base_weights.items()}, judge / "model.safetensors")

    def distance(out: Path, start: dict[str, torch.Tensor]) -> float:
        after = load_file(out / "model.safetensors")
        return max(float((after[k] - start[k]).abs().max()) for k in start)

    run(_tiny_config(init="base"), judge, shapes_dataset, tmp_path / "b", base_dir=tiny_model_dir)
    assert distance(tmp_path / "b", base_weights) < 0.1
    info = json.loads((tmp_path / "b" / "unireward.json").read_text())
    assert info["started_from"] == str(tiny_model_dir) and info["config"]["init"] == "base"
    judge_weights = load_file(judge / "model.safetensors")
    run(_tiny_config(), judge, shapes_dataset, tmp_path / "j", base_dir=tiny_model_dir)
    assert distance(tmp_path / "j", judge_weights) < 0.1

    with pytest.raises(ValueError, match="init: base needs the base model"):
        run(_tiny_config(init="base"), judge, shapes_dataset, tmp_path / "none")
    with pytest.raises(ValueError, match="init 'scratch' unknown"):
        _tiny_config(init="scratch")


class _Killed(Exception):
    pass


class _KillAfterSave(TrainerCallback):
    """Dies right after checkpoint `step` is written, like a process killed mid-run."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            raise _Killed(f"killed after step {state.global_step}")


def test_a_killed_and_restarted_run_equals_an_uninterrupted_one(
    tiny_model_dir: Path, shapes_dataset: Path, tmp_path: Path
) -> None:
    config = _tiny_config()
    run(config, tiny_model_dir, shapes_dataset, tmp_path / "straight")

    out = tmp_path / "killed"
    with pytest.raises(_Killed):
        run(config, tiny_model_dir, shapes_dataset, out, callbacks=[_KillAfterSave(2)])
    assert latest_checkpoint(out).name == "checkpoint-2"
    assert not (out / "model.safetensors").exists()
    teacher_log = (out / DISTILL / "teacher_outputs.jsonl").stat().st_mtime_ns

    result = run(config, tiny_model_dir, shapes_dataset, out)
    assert result.train.resumed_from.endswith("checkpoint-2") and result.train.global_step == 4
    assert (out / DISTILL / "teacher_outputs.jsonl").stat().st_mtime_ns == teacher_log  # reused
    # a different teacher config means a different distillation: not reused
    other = _tiny_config(teacher={"error_rate": 0.5})
    run_distillation(other, shapes_dataset, out)
    assert (out / DISTILL / "teacher_outputs.jsonl").stat().st_mtime_ns != teacher_log
    straight = load_file(tmp_path / "straight" / "model.safetensors")
    resumed = load_file(out / "model.safetensors")
    assert straight.keys() == resumed.keys()
    differing = [k for k in straight if not torch.allclose(straight[k], resumed[k], atol=1e-6)]
    assert differing == []
