"""The reward client against a real local HTTP server (no mocks): retries with backoff on 429 /
5xx / timeouts, no retry on other 4xx, a failed request reported not lost, the concurrency
bound, the request it sends (contract prompt, data-URL images in order, the API key), and the
pure preference math (swap-debiasing, win rates). The client against vLLM: tests/test_serve.py.

    .venv/bin/pytest tests/test_serving_client.py -q
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from unireward.contract import PairVerdict
from unireward.prompt_templates import default_templates, load_templates
from unireward.serving.client import (
    ClientConfig,
    PairQuery,
    RewardClient,
    ScoreQuery,
    backoff_delay,
    openai_messages,
)
from unireward.serving.preference import combine_swapped, disagree, unswap, win_rates
from unireward.tasks import Mode, Task

KEY = "test-key-123"


# --------------------------------------------------------------------------- a scripted server


@dataclass
class Step:
    status: int = 200
    text: str = "Image 1 is better"  # the assistant answer when status == 200
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Script:
    """Responses in arrival order; after the list runs out, `default` answers."""

    steps: list[Step] = field(default_factory=list)
    default: Step = field(default_factory=Step)
    answer_by_prompt: dict[str, str] = field(default_factory=dict)  # substring -> answer
    answer: Callable[[dict], str] | None = None  # request body -> answer (a judge with a rule)
    bodies: list[dict] = field(default_factory=list)
    auth: list[str | None] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next(self, body: dict) -> Step:
        with self.lock:
            self.bodies.append(body)
            self.arrivals.append(time.monotonic())
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            step = self.steps.pop(0) if self.steps else self.default
        if self.answer is not None:
            return Step(step.status, self.answer(body), step.delay_s, step.headers)
        text = json.dumps(body["messages"])
        for needle, answer in self.answer_by_prompt.items():
            if needle in text:
                return Step(step.status, answer, step.delay_s, step.headers)
        return step

    def done(self) -> None:
        with self.lock:
            self.in_flight -= 1


def _handler(script: Script):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            script.auth.append(self.headers.get("Authorization"))
            step = script.next(body)
            try:
                time.sleep(step.delay_s)
                if step.status == 200:
                    payload = {
                        "id": "x",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body["model"],
                        "choices": [
                            {
                                "index": 0,
                                "finish_reason": "stop",
                                "message": {"role": "assistant", "content": step.text},
                            }
                        ],
                    }
                else:
                    payload = {"error": {"message": f"scripted {step.status}", "code": step.status}}
                data = json.dumps(payload).encode()
                self.send_response(step.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in step.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout test)
            finally:
                script.done()

    return Handler


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", script
    finally:
        httpd.shutdown()
        httpd.server_close()


def _client(url: str, **kw) -> RewardClient:
    defaults = dict(backoff_s=0.05, backoff_max_s=0.2, timeout_s=5.0, max_retries=3)
    return RewardClient(ClientConfig(url, KEY, **{**defaults, **kw}))


def _img(color: tuple[int, int, int], size: int = 28) -> Image.Image:
    return Image.new("RGB", (size, size), color)


RED, BLUE, GREEN = _img((255, 0, 0)), _img((0, 0, 255)), _img((0, 255, 0))
GEN = PairQuery(Task.IMAGE_GENERATION, "a red square", media=(RED, BLUE))


# --------------------------------------------------------------------------- retries


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_retryable_status_then_success(server, status: int) -> None:
    url, script = server
    script.steps = [Step(status), Step(status)]
    client = _client(url)
    j = client.judge_pair(GEN)
    assert j.verdict == PairVerdict(1) and j.error is None
    assert len(script.bodies) == 3
    assert client.stats.retries == 2 and client.stats.failures == 0
    gaps = np.diff(script.arrivals)
    assert (gaps >= 0.05 * 0.5 - 0.01).all(), f"retried without backoff: {gaps}"


def test_retry_after_header_is_honoured(server) -> None:
    url, script = server
    script.steps = [Step(429, headers={"Retry-After": "0.3"})]
    j = _client(url, backoff_max_s=1.0).judge_pair(GEN)
    assert j.verdict.preferred == 1
    assert script.arrivals[1] - script.arrivals[0] >= 0.28


def test_timeout_is_retried(server) -> None:
    url, script = server
    script.steps = [Step(delay_s=1.5)]
    client = _client(url, timeout_s=0.5)
    j = client.judge_pair(GEN)
    assert j.verdict.preferred == 1 and client.stats.retries == 1


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_client_errors_are_not_retried_and_not_guessed(server, status: int) -> None:
    url, script = server
    script.steps = [Step(status)]
    client = _client(url)
    j = client.judge_pair(GEN)
    assert len(script.bodies) == 1 and client.stats.retries == 0
    assert j.verdict.preferred is None and j.text is None
    assert f"HTTP {status}" in j.error and "request failed" in j.verdict.reason


def test_giving_up_after_max_retries_reports_the_failure(server) -> None:
    url, script = server
    script.default = Step(503)
    client = _client(url, max_retries=2)
    [a, b] = client.judge_pairs([GEN, GEN])
    for j in (a, b):
        assert j.verdict.preferred is None
        assert "HTTP 503" in j.error and "after 3 attempt(s)" in j.error
    assert len(script.bodies) == 6 and client.stats.failures == 2


def test_backoff_grows_and_is_capped() -> None:
    cfg = ClientConfig("http://x/v1", KEY, backoff_s=0.1, backoff_max_s=1.0)
    for retry, (lo, hi) in enumerate([(0.05, 0.1), (0.1, 0.2), (0.2, 0.4), (0.4, 0.8)]):
        assert lo <= backoff_delay(cfg, retry) <= hi
    assert 0.5 <= backoff_delay(cfg, 10) <= 1.0
    assert backoff_delay(cfg, 0, retry_after=30.0) == 1.0


# --------------------------------------------------------------------------- concurrency


def test_concurrency_is_bounded_and_order_kept(server) -> None:
    url, script = server
    script.default = Step(delay_s=0.1)
    # Each query asks about a different caption; the server answers by caption.
    script.answer_by_prompt = {f"item-{i:02d}": f"Image {1 + i % 2} is better" for i in range(20)}
    queries = [PairQuery(Task.IMAGE_GENERATION, f"item-{i:02d}", (RED, BLUE)) for i in range(20)]
    start = time.perf_counter()
    out = _client(url, max_concurrency=4).judge_pairs(queries)
    elapsed = time.perf_counter() - start
    assert [j.verdict.preferred for j in out] == [1 + i % 2 for i in range(20)]
    assert script.max_in_flight <= 4
    assert script.max_in_flight >= 2, "requests were not concurrent"
    assert elapsed < 20 * 0.1, "no faster than one at a time"


# --------------------------------------------------------------------------- what is sent


def _decode(url: str) -> Image.Image:
    prefix = "data:image/png;base64,"
    assert url.startswith(prefix)
    return Image.open(io.BytesIO(base64.b64decode(url[len(prefix) :])))


def test_request_carries_key_model_prompt_and_images_in_order(server) -> None:
    url, script = server
    _client(url, max_tokens=7).judge_pair(GEN)
    body = script.bodies[0]
    assert script.auth == [f"Bearer {KEY}"]
    assert body["model"] == "UnifiedReward" and body["max_tokens"] == 7
    assert body["temperature"] == 0.0
    parts = body["messages"][0]["content"]
    kinds = [p["type"] for p in parts]
    assert kinds == ["text", "image_url", "text", "image_url", "text"]
    assert parts[0]["text"] == "Image 1:" and parts[2]["text"] == "Image 2:"
    assert "Caption: a red square" in parts[4]["text"]
    first, second = (_decode(parts[i]["image_url"]["url"]) for i in (1, 3))
    assert np.array_equal(np.asarray(first), np.asarray(RED))  # PNG: exact pixels
    assert np.array_equal(np.asarray(second), np.asarray(BLUE))


def test_the_judge_is_asked_in_the_words_of_its_templates(server, tmp_path: Path) -> None:
    url, script = server
    data = yaml.safe_load(default_templates().text)
    data["version"] = "theirs-1"
    data["templates"]["image_generation"]["pairwise"] = "Caption: {caption}\nPick: {choices}"
    data["templates"]["image_generation"]["pointwise"] = "{caption}\n{lo}..{hi}, Final Score: n"
    path = tmp_path / "theirs.yaml"
    path.write_text(yaml.safe_dump(data))
    judge = _client(url, prompt_templates=load_templates(path))
    assert judge.judge_pair(GEN).verdict.preferred == 1
    judge.score([ScoreQuery(Task.IMAGE_GENERATION, "a red square", RED)])
    pair, point = (body["messages"][0]["content"][-1]["text"] for body in script.bodies)
    assert pair.startswith('Caption: a red square\nPick: "Image 1 is better"')
    assert point == "a red square\n1..5, Final Score: n"
    _client(url).judge_pair(GEN)  # no templates: the project's default words
    assert script.bodies[-1]["messages"][0]["content"][-1]["text"].startswith("Which image")


def test_video_is_sent_as_frames() -> None:
    video_a = [_img((i * 30, 0, 0)) for i in range(8)]
    video_b = [_img((0, i * 30, 0)) for i in range(8)]
    [msg] = openai_messages(Task.VIDEO_GENERATION, Mode.PAIRWISE, "a ball", (video_a, video_b))
    images = [p for p in msg["content"] if p["type"] == "image_url"]
    assert len(images) == 16
    # first half video 1, in temporal order
    assert np.asarray(_decode(images[3]["image_url"]["url"]))[0, 0, 0] == 90
    assert np.asarray(_decode(images[8]["image_url"]["url"]))[0, 0, 1] == 0
    with pytest.raises(ValueError, match="frame counts"):
        openai_messages(Task.VIDEO_GENERATION, Mode.PAIRWISE, "x", (video_a, video_b[:4]))


def test_understanding_pair_swaps_answers_not_media() -> None:
    q = PairQuery(Task.IMAGE_UNDERSTANDING, "what colour?", (RED,), responses=("red", "blue"))
    assert q.swapped().responses == ("blue", "red") and q.swapped().media == (RED,)
    assert GEN.swapped().media == (BLUE, RED)


# --------------------------------------------------------------------------- typed answers


def test_unparseable_answer_is_reported_not_guessed(server) -> None:
    url, script = server
    script.default = Step(text="circle circle")
    j = _client(url).judge_pair(GEN)
    assert j.verdict.preferred is None and j.error is None
    assert "no answer string" in j.verdict.reason and j.text == "circle circle"


def test_swap_debiasing_against_a_positional_judge(server) -> None:
    url, script = server
    script.default = Step(text="Image 1 is better")  # always the first position
    j = _client(url).judge_pair(GEN, swap=True)
    assert len(script.bodies) == 2
    assert j.forward == PairVerdict(1) and j.swapped == PairVerdict(2)
    assert j.disagree is True and j.verdict == PairVerdict(0)


def _urls(body: dict) -> list[str]:
    return [p["image_url"]["url"] for p in body["messages"][0]["content"] if "image_url" in p]


def _url(img: Image.Image) -> str:
    messages = openai_messages(Task.IMAGE_GENERATION, Mode.PAIRWISE, "x", (img, img))
    return _urls({"messages": messages})[0]


def test_swap_debiasing_against_a_consistent_judge(server) -> None:
    url, script = server
    red = _url(RED)  # the judge prefers the red image wherever it is
    script.answer = lambda body: f"Image {1 if _urls(body)[0] == red else 2} is better"
    j = _client(url).judge_pair(GEN, swap=True)
    assert j.verdict == PairVerdict(1) and j.disagree is False


def test_score_parses_final_score_and_normalises(server) -> None:
    url, script = server
    script.answer_by_prompt = {"item-A": "Looks fine. Final Score: 4", "item-B": "Final Score: 9"}
    queries = [
        ScoreQuery(Task.IMAGE_GENERATION, "item-A", RED),
        ScoreQuery(Task.IMAGE_GENERATION, "item-B", RED),  # 9 is off the 1-5 scale
    ]
    good, bad = _client(url).score(queries)
    assert good.score.score == 4.0 and good.normalised == 0.75
    assert bad.score.score is None and "outside" in bad.score.reason and bad.normalised is None


def test_group_win_rates_over_all_pairs(server) -> None:
    url, script = server
    # A judge that prefers red > green > blue, consistently in both orders.
    rank = {_url(RED): 0, _url(GREEN): 1, _url(BLUE): 2}

    def rule(body: dict) -> str:
        a, b = (rank[u] for u in _urls(body))
        return "Image 1 is better" if a < b else "Image 2 is better"

    script.answer = rule
    rates = _client(url).group_win_rates(Task.IMAGE_GENERATION, "a red square", [BLUE, RED, GREEN])
    assert rates == [0.0, 1.0, 0.5]
    assert len(script.bodies) == 6  # 3 pairs x 2 orders
    with pytest.raises(ValueError, match="media"):
        _client(url).group_win_rates(Task.IMAGE_UNDERSTANDING, "q", ["a", "b"])


# --------------------------------------------------------------------------- pure math


@pytest.mark.parametrize(
    ("forward", "backward", "combined", "differ"),
    [
        (PairVerdict(1), PairVerdict(1), PairVerdict(1), False),
        (PairVerdict(2), PairVerdict(2), PairVerdict(2), False),
        (PairVerdict(0), PairVerdict(0), PairVerdict(0), False),
        (PairVerdict(1), PairVerdict(2), PairVerdict(0), True),
        (PairVerdict(1), PairVerdict(0), PairVerdict(0), True),
        (PairVerdict(None, "x"), PairVerdict(1), PairVerdict(None, "forward order: x"), None),
        (PairVerdict(1), PairVerdict(None, "y"), PairVerdict(None, "swapped order: y"), None),
    ],
)
def test_combine_swapped(forward, backward, combined, differ) -> None:
    assert combine_swapped(forward, backward) == combined
    assert disagree(forward, backward) is differ


def test_unswap_mirrors() -> None:
    assert [unswap(PairVerdict(p)).preferred for p in (1, 2, 0)] == [2, 1, 0]
    assert unswap(PairVerdict(None, "r")) == PairVerdict(None, "r")


@pytest.mark.parametrize(
    ("n", "outcomes", "expected"),
    [
        (2, {(0, 1): 1}, [1.0, 0.0]),
        (2, {(0, 1): 0}, [0.5, 0.5]),
        (2, {(0, 1): None}, [None, None]),
        (3, {(0, 1): 2, (0, 2): 2, (1, 2): 1}, [0.0, 1.0, 0.5]),
        (3, {(0, 1): 1, (0, 2): None, (1, 2): None}, [1.0, 0.0, None]),
        (1, {}, [None]),
    ],
)
def test_win_rates(n, outcomes, expected) -> None:
    assert win_rates(n, outcomes) == expected


@pytest.mark.parametrize(
    ("n", "outcomes"), [(2, {(1, 0): 1}), (2, {(0, 2): 1}), (2, {(0, 1): 3}), (0, {})]
)
def test_win_rates_refuses_bad_input(n, outcomes) -> None:
    with pytest.raises(ValueError):
        win_rates(n, outcomes)


def test_config_validates_and_hides_the_key() -> None:
    assert KEY not in repr(ClientConfig("http://127.0.0.1:1/v1", KEY))
    with pytest.raises(ValueError, match="api_key"):
        ClientConfig("http://127.0.0.1:1/v1", "")
    with pytest.raises(ValueError, match="base_url"):
        ClientConfig("127.0.0.1:1", KEY)
