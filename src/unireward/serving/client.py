"""Reward client: the served judge (`unireward serve`) as typed verdicts and scores.

    from unireward.serving.client import ClientConfig, PairQuery, RewardClient
    from unireward.tasks import Task

    client = RewardClient(ClientConfig(base_url=server.base_url, api_key=key))
    judgement = client.judge_pair(
        PairQuery(Task.IMAGE_GENERATION, "a red circle at the top left", media=(img_a, img_b)),
        swap=True,
    )
    judgement.verdict.preferred   # 1, 2, 0 (tie / no preference that survives swapping), or None
    judgement.verdict.reason      # why None: unparseable text, or the request failed

What it does:
- prompts come from `unireward.contract.build_messages` in the words of
  `ClientConfig.prompt_templates` (None = the project's default file; for a judge trained on
  other prompts pass its own: `load_templates("<model dir>/prompts.yaml")`);
  the `{"type": "image"}` placeholders become `image_url` parts with base64 PNG data URLs, in
  order; a video is a sequence of frames (8 per video in the contract), sent as images;
- answers go through `contract.parse_pairwise` / `parse_pointwise`: unparseable text is
  reported with its reason, never mapped to a side or a score;
- many queries run concurrently (asyncio + `openai.AsyncOpenAI`) with at most
  `max_concurrency` requests in flight; vLLM batches them on the server (continuous batching);
- 429, 5xx, timeouts and dropped connections are retried with exponential backoff and jitter
  (honouring `Retry-After`); other 4xx are not retried. A request that still fails yields a
  result with `error` set and an unparseable verdict: no query is lost;
- `swap=True` asks both orders, combines them (`preference.combine_swapped`) and reports
  disagreement; `group_win_rates` judges all pairs of N candidates into win rates.

The methods are synchronous (they run an event loop of their own); async callers use the `a*`
variants. Tests: tests/test_serving_client.py (retries against a real local HTTP server),
tests/test_serve.py (end to end against vLLM).
"""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from unireward import contract
from unireward.contract import PairVerdict, PointScore
from unireward.progress import gather_progress
from unireward.prompt_templates import PromptTemplates
from unireward.serving.preference import combine_swapped, disagree, unswap, win_rates
from unireward.tasks import Mode, Task, normalise_score, parse_mode, parse_task

if TYPE_CHECKING:
    from unireward.data.schema import Record

# An image, or the frames of one video (sent as images, in order).
Visual = Image.Image | Sequence[Image.Image]


class JudgeUnavailable(ConnectionError):
    """The judge server did not answer after the client's retries (it died, or is unreachable):
    a stage that needs its verdicts stops here rather than keep what it could not judge."""


@dataclass(frozen=True)
class ClientConfig:
    """Where the judge is and how hard to push it. `api_key` is never printed (repr=False)."""

    base_url: str  # e.g. http://127.0.0.1:8000/v1
    api_key: str = field(repr=False)
    model: str = "UnifiedReward"  # the served model name
    max_concurrency: int = 16  # requests in flight at once
    timeout_s: float = 60.0  # per attempt
    max_retries: int = 4  # retries after the first attempt (429 / 5xx / timeout / connection)
    backoff_s: float = 0.25  # first retry delay; doubles per retry, with jitter
    backoff_max_s: float = 8.0
    max_tokens: int = 16  # direct answers are a few tokens
    cot_max_tokens: int = 512
    temperature: float = 0.0  # greedy: a reward must not be a coin toss
    # The words the judge is asked in: the ones it was trained on (None = the project's default).
    prompt_templates: PromptTemplates | None = None

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be http(s)://host:port/v1, got {self.base_url!r}")
        if not self.api_key:
            raise ValueError("api_key is empty; pass the key the server was started with")
        if self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {self.max_concurrency}")
        if self.max_retries < 0 or self.backoff_s < 0 or self.timeout_s <= 0:
            raise ValueError("max_retries and backoff_s must be >= 0 and timeout_s > 0")


@dataclass(frozen=True)
class PairQuery:
    """One pairwise question. Generation tasks: `media` = the two candidates, no responses.
    Understanding tasks: `media` = the one image/video, `responses` = the two answers."""

    task: Task
    prompt: str
    media: tuple[Visual, ...]
    responses: tuple[str, ...] = ()
    cot: bool = False

    def swapped(self) -> PairQuery:
        """The same question with the two candidates in the other order."""
        if self.task.is_generation:
            return replace(self, media=tuple(reversed(self.media)))
        return replace(self, responses=tuple(reversed(self.responses)))


@dataclass(frozen=True)
class ScoreQuery:
    """One pointwise question: one image/video, plus the answer to score for understanding."""

    task: Task
    prompt: str
    media: Visual
    response: str | None = None


@dataclass(frozen=True)
class PairJudgement:
    """`verdict` is the answer: the forward verdict, or with swap=True both orders combined."""

    verdict: PairVerdict
    forward: PairVerdict  # the verdict on the order asked
    text: str | None  # the judge's raw answer (None when the request failed)
    error: str | None = None  # a request failed after retries (its verdict is then unparseable)
    swapped: PairVerdict | None = None  # swap=True: the verdict on the other order, mapped back
    swapped_text: str | None = None
    latency_s: float = 0.0  # wall time of the request(s), retries included

    @property
    def disagree(self) -> bool | None:
        """swap=True: both orders parsed and differ; None if not asked or either is missing."""
        return None if self.swapped is None else disagree(self.forward, self.swapped)


@dataclass(frozen=True)
class ScoreResult:
    task: Task
    score: PointScore  # on the task's native scale (tasks.SCORE_RANGE)
    text: str | None
    error: str | None = None
    latency_s: float = 0.0

    @property
    def normalised(self) -> float | None:
        """The score in [0, 1], comparable across tasks; None when unparseable."""
        return None if self.score.score is None else normalise_score(self.task, self.score.score)


@dataclass
class ClientStats:
    """Counters over the client's lifetime (the load test reads them)."""

    requests: int = 0
    retries: int = 0
    failures: int = 0


@dataclass(frozen=True)
class _Reply:
    text: str | None
    error: str | None
    latency_s: float


def query_from_record(record: Record, root: Path) -> PairQuery | ScoreQuery:
    """A canonical dataset record (data/schema.py) as the query that asks the judge about it."""
    from unireward.judge.examples import load_image

    task, mode = parse_task(record.task), parse_mode(record.mode)
    items: list[Visual] = []
    for item in record.media:
        frames = [load_image(Path(root), rel) for rel in item]
        items.append(frames[0] if not task.is_video else frames)
    if mode == Mode.PAIRWISE:
        return PairQuery(task, record.prompt, tuple(items), tuple(record.responses))
    response = record.responses[0] if record.responses else None
    return ScoreQuery(task, record.prompt, items[0], response)


# --------------------------------------------------------------------------- messages


def image_data_url(image: Image.Image) -> str:
    """`data:image/png;base64,...` for a PIL image (lossless: the judge sees the exact pixels)."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _frames(item: Visual) -> list[Image.Image]:
    if isinstance(item, Image.Image):
        return [item]
    frames = list(item)
    if not frames or not all(isinstance(f, Image.Image) for f in frames):
        raise TypeError("a visual item is a PIL image or a non-empty sequence of PIL images")
    return frames


def openai_messages(
    task: Task,
    mode: Mode,
    prompt: str,
    media: Sequence[Visual],
    responses: Sequence[str] = (),
    cot: bool = False,
    encode: Callable[[Image.Image], str] = image_data_url,
    templates: PromptTemplates | None = None,
) -> list[dict[str, Any]]:
    """The contract's chat messages (`templates`' words; None = the default) in OpenAI form:
    image placeholders -> data-URL parts."""
    items = [_frames(item) for item in media]
    counts = {len(frames) for frames in items}
    if len(counts) > 1:
        raise ValueError(f"visual items have different frame counts {sorted(counts)}")
    frames_per_item = counts.pop() if counts else 1
    messages = contract.build_messages(
        task, mode, prompt, list(responses), len(items), frames_per_item, cot, templates=templates
    )
    images = iter([frame for frames in items for frame in frames])
    content: list[dict[str, Any]] = []
    for part in messages[0]["content"]:
        if part["type"] == "image":
            url = encode(next(images))
            content.append({"type": "image_url", "image_url": {"url": url}})
        else:
            content.append({"type": "text", "text": part["text"]})
    return [{"role": "user", "content": content}]


Encoder = Callable[[Image.Image], str]


def pair_messages(
    query: PairQuery, encode: Encoder = image_data_url, templates: PromptTemplates | None = None
) -> list[dict[str, Any]]:
    """`openai_messages` asking a pairwise query (in CoT mode when `query.cot`)."""
    return openai_messages(
        query.task,
        Mode.PAIRWISE,
        query.prompt,
        query.media,
        query.responses,
        query.cot,
        encode=encode,
        templates=templates,
    )


def score_messages(
    query: ScoreQuery, encode: Encoder = image_data_url, templates: PromptTemplates | None = None
) -> list[dict[str, Any]]:
    """`openai_messages` asking a pointwise query (its one item; its answer, if any)."""
    responses = () if query.response is None else (query.response,)
    return openai_messages(
        query.task,
        Mode.POINTWISE,
        query.prompt,
        (query.media,),
        responses,
        encode=encode,
        templates=templates,
    )


def _memo_encoder() -> Encoder:
    """`image_data_url` that encodes each image once per call, however often it is sent (swap,
    groups). Keyed by id: the call's queries keep their images alive, so ids stay unique."""
    urls: dict[int, str] = {}

    def encode(image: Image.Image) -> str:
        if id(image) not in urls:
            urls[id(image)] = image_data_url(image)
        return urls[id(image)]

    return encode


# --------------------------------------------------------------------------- transport


def _retryable(err: Exception) -> bool:
    import openai

    if isinstance(err, openai.APIConnectionError):  # includes APITimeoutError
        return True
    if isinstance(err, openai.APIStatusError):
        return err.status_code == 429 or err.status_code >= 500
    return False


def _describe(err: Exception) -> str:
    import openai

    if isinstance(err, openai.APIStatusError):
        return f"HTTP {err.status_code}: {str(err.message)[:200]}"
    return f"{type(err).__name__}: {str(err)[:200]}"


def _retry_after(err: Exception) -> float | None:
    import openai

    if isinstance(err, openai.APIStatusError):
        value = err.response.headers.get("retry-after")
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None
    return None


def backoff_delay(config: ClientConfig, retry: int, retry_after: float | None = None) -> float:
    """Delay before retry number `retry` (0-based): backoff_s * 2**retry with full jitter in its
    upper half, capped at backoff_max_s; a server's Retry-After wins (also capped)."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), config.backoff_max_s)
    base = min(config.backoff_s * 2**retry, config.backoff_max_s)
    return base * random.uniform(0.5, 1.0)


class _Session:
    """One AsyncOpenAI client + a concurrency bound, inside one event loop."""

    def __init__(self, config: ClientConfig, stats: ClientStats) -> None:
        import openai

        self.config = config
        self.stats = stats
        # Retries are ours (counted, bounded, logged in the result); the SDK's are off.
        self.openai = openai.AsyncOpenAI(
            base_url=config.base_url,
            api_key=config.api_key,
            timeout=config.timeout_s,
            max_retries=0,
        )
        self.bound = asyncio.Semaphore(config.max_concurrency)

    async def close(self) -> None:
        await self.openai.close()

    async def complete(self, messages: list[dict[str, Any]], max_tokens: int) -> _Reply:
        import openai

        async with self.bound:
            start = time.perf_counter()
            for attempt in range(self.config.max_retries + 1):
                self.stats.requests += 1
                try:
                    response = await self.openai.chat.completions.create(
                        model=self.config.model,
                        messages=messages,
                        max_tokens=max_tokens,
                        temperature=self.config.temperature,
                    )
                    text = response.choices[0].message.content or ""
                    return _Reply(text, None, time.perf_counter() - start)
                except openai.OpenAIError as err:
                    last = _describe(err)
                    if not _retryable(err) or attempt == self.config.max_retries:
                        break
                    self.stats.retries += 1
                    await asyncio.sleep(backoff_delay(self.config, attempt, _retry_after(err)))
            self.stats.failures += 1
            tries = attempt + 1
            return _Reply(None, f"{last} (after {tries} attempt(s))", time.perf_counter() - start)


# --------------------------------------------------------------------------- client


class RewardClient:
    """Typed judgements from an OpenAI-compatible judge endpoint (see the module docstring)."""

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self.stats = ClientStats()

    # ---- pairwise

    async def ajudge_pairs(
        self, queries: Sequence[PairQuery], swap: bool = False
    ) -> list[PairJudgement]:
        session, encode = _Session(self.config, self.stats), _memo_encoder()
        try:
            forward = [self._ask_pair(session, q, encode) for q in queries]
            backward = (
                [self._ask_pair(session, q.swapped(), encode) for q in queries] if swap else []
            )
            replies = await gather_progress([*forward, *backward], "judge pairs")
        finally:
            await session.close()
        out = []
        for i, query in enumerate(queries):
            fwd = replies[i]
            judgement = _pair_judgement(query, fwd)
            if swap:
                judgement = _with_swap(query, judgement, replies[len(queries) + i])
            out.append(judgement)
        return out

    def judge_pairs(self, queries: Sequence[PairQuery], swap: bool = False) -> list[PairJudgement]:
        """Judge many pairs concurrently; results in the order of `queries`."""
        return asyncio.run(self.ajudge_pairs(queries, swap=swap))

    def judge_pair(self, query: PairQuery, swap: bool = False) -> PairJudgement:
        return self.judge_pairs([query], swap=swap)[0]

    async def _ask_pair(self, session: _Session, query: PairQuery, encode: Encoder) -> _Reply:
        messages = pair_messages(query, encode, self.config.prompt_templates)
        limit = self.config.cot_max_tokens if query.cot else self.config.max_tokens
        return await session.complete(messages, limit)

    # ---- pointwise

    async def ascore(self, queries: Sequence[ScoreQuery]) -> list[ScoreResult]:
        session, encode = _Session(self.config, self.stats), _memo_encoder()
        try:
            replies = await gather_progress(
                [self._ask_score(session, q, encode) for q in queries], "judge scores"
            )
        finally:
            await session.close()
        return [_score_result(q, r) for q, r in zip(queries, replies, strict=True)]

    def score(self, queries: Sequence[ScoreQuery]) -> list[ScoreResult]:
        """Score many items concurrently; results in the order of `queries`."""
        return asyncio.run(self.ascore(queries))

    async def _ask_score(self, session: _Session, query: ScoreQuery, encode: Encoder) -> _Reply:
        messages = score_messages(query, encode, self.config.prompt_templates)
        return await session.complete(messages, self.config.max_tokens)

    # ---- groups

    def group_win_rates(
        self,
        task: Task,
        prompt: str,
        candidates: Sequence[Visual] | Sequence[str],
        media: Visual | None = None,
        swap: bool = True,
    ) -> list[float | None]:
        """Win rate of each of N candidates over all N(N-1)/2 pairs (`preference.win_rates`).

        Generation tasks: candidates are images/videos for `prompt`. Understanding tasks:
        candidates are answers to `prompt` about `media`.
        """
        if task.is_generation == (media is not None):
            raise ValueError(
                "generation tasks compare visual candidates (no media=); understanding tasks "
                "compare answers about one media item (media= required)"
            )
        pairs = list(itertools.combinations(range(len(candidates)), 2))
        queries = [
            PairQuery(task, prompt, media=(candidates[i], candidates[j]))  # type: ignore[arg-type]
            if task.is_generation
            else PairQuery(task, prompt, media=(media,), responses=(candidates[i], candidates[j]))  # type: ignore[arg-type]
            for i, j in pairs
        ]
        judgements = self.judge_pairs(queries, swap=swap)
        outcomes = {p: j.verdict.preferred for p, j in zip(pairs, judgements, strict=True)}
        return win_rates(len(candidates), outcomes)


def _pair_judgement(query: PairQuery, reply: _Reply) -> PairJudgement:
    verdict = _parse_pair(query, reply)
    return PairJudgement(verdict, verdict, reply.text, reply.error, latency_s=reply.latency_s)


def _parse_pair(query: PairQuery, reply: _Reply) -> PairVerdict:
    if reply.text is None:
        return PairVerdict(None, f"request failed: {reply.error}")
    return contract.parse_pairwise(reply.text, query.task, cot=query.cot)


def _with_swap(query: PairQuery, forward: PairJudgement, reply: _Reply) -> PairJudgement:
    backward = unswap(_parse_pair(query, reply))
    return replace(
        forward,
        verdict=combine_swapped(forward.forward, backward),
        error=forward.error or reply.error,
        swapped=backward,
        swapped_text=reply.text,
        latency_s=max(forward.latency_s, reply.latency_s),
    )


def _score_result(query: ScoreQuery, reply: _Reply) -> ScoreResult:
    if reply.text is None:
        score = PointScore(None, f"request failed: {reply.error}")
    else:
        score = contract.parse_pointwise(reply.text, query.task)
    return ScoreResult(query.task, score, reply.text, reply.error, reply.latency_s)
