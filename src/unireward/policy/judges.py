"""The judges `build_pairs` can ask: the served reward model, or the shapes-world oracle.

Both answer the same two calls, the reward client's (`serving.client.RewardClient`):

    judge.judge_pairs([PairQuery(...)], swap=True) -> [PairJudgement]
    judge.score([ScoreQuery(...)])                 -> [ScoreResult]

`JUDGES` picks one by the `build_pairs.judge` name in params.yaml:
- `served`: the trained UnifiedReward judge behind vLLM (`unireward serve`), through
  `RewardClient` -- what the published pipeline does;
- `oracle`: `ShapesOracle`, a programmatic judge that knows the ground truth of every question
  it is asked (looked up by question and image content, `questions.image_key`). It is *not* a
  learned model: it exists to show that pair construction + DPO improve the policy when the
  judge is right, separately from whether the trained judge is right (README: it is at chance).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from unireward.contract import PairVerdict, PointScore
from unireward.policy.questions import image_key, is_correct
from unireward.serving.client import PairJudgement, PairQuery, ScoreQuery, ScoreResult
from unireward.tasks import PAIR_ANSWERS, SCORE_RANGE, Task


class PolicyJudge(Protocol):
    def judge_pairs(
        self, queries: Sequence[PairQuery], swap: bool = False
    ) -> list[PairJudgement]: ...

    def score(self, queries: Sequence[ScoreQuery]) -> list[ScoreResult]: ...


class ShapesOracle:
    """Ground-truth judge for image-understanding queries about shapes-world questions.

    Pairwise: the right answer is better; both right or both wrong is a tie (0). Pointwise: the
    top of the task's scale (100) for a right answer, the bottom (0) for a wrong one. A query
    whose (question, image) it was not given raises: the oracle never guesses.
    """

    def __init__(self, truth: Mapping[str, str]) -> None:
        self.truth = dict(truth)

    def _truth(self, prompt: str, media) -> str:
        key = image_key(prompt, media)
        if key not in self.truth:
            raise KeyError(f"the oracle has no ground truth for question {prompt!r} on this image")
        return self.truth[key]

    def judge_pairs(self, queries: Sequence[PairQuery], swap: bool = False) -> list[PairJudgement]:
        out = []
        for q in queries:
            if q.task != Task.IMAGE_UNDERSTANDING or len(q.responses) != 2:
                raise ValueError("the shapes oracle judges image-understanding answer pairs only")
            truth = self._truth(q.prompt, q.media[0])
            right = [is_correct(r, truth) for r in q.responses]
            preferred = 0 if right[0] == right[1] else (1 if right[0] else 2)
            text = PAIR_ANSWERS[q.task][preferred - 1] if preferred else "tie (oracle)"
            verdict = PairVerdict(preferred)
            swapped = verdict if swap else None
            out.append(
                PairJudgement(
                    verdict, verdict, text, swapped=swapped, swapped_text=text if swap else None
                )
            )
        return out

    def score(self, queries: Sequence[ScoreQuery]) -> list[ScoreResult]:
        lo, hi = SCORE_RANGE[Task.IMAGE_UNDERSTANDING]
        out = []
        for q in queries:
            if q.task != Task.IMAGE_UNDERSTANDING or q.response is None:
                raise ValueError("the shapes oracle scores image-understanding answers only")
            value = hi if is_correct(q.response, self._truth(q.prompt, q.media)) else lo
            out.append(ScoreResult(q.task, PointScore(value), f"Final Score: {value:g}"))
        return out
