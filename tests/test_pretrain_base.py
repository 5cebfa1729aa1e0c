"""pretrain_base: perception data has no judging in it, every question kind is reported, and the
stage writes a loadable checkpoint with its perception report."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from unireward.config import DEFAULT_PARAMS, from_dict, load_stage_config
from unireward.data.shapes import ShapesConfig, perception_example
from unireward.model.pretrain_base import (
    PretrainBaseConfig,
    asks_first,
    corpus_example,
    gets_hint,
    perception_to_example,
    run,
)
from unireward.model.tiny import load_checkpoint
from unireward.tasks import PAIR_ANSWERS, TIE_ANSWERS, Mode

REPO = Path(__file__).resolve().parents[1]


def test_every_perception_question_has_a_kind_and_no_judge_answer() -> None:
    cfg = ShapesConfig(frames=4)
    rng = np.random.default_rng(0)
    judge_strings = {a for pair in PAIR_ANSWERS.values() for a in pair} | set(TIE_ANSWERS.values())
    kinds = set()
    for _ in range(300):
        perception = perception_example(rng, cfg)
        ex = perception_to_example(perception)
        answer = ex["completion"][0]["content"][0]["text"]
        kinds.add(perception.kind)
        assert answer not in judge_strings
        assert sum(p["type"] == "image" for p in ex["prompt"][0]["content"]) == len(ex["images"])
    assert kinds >= {"colour", "shape", "position", "motion", "describe_image", "describe_video"}


_TINY = {
    "model": {
        "vocab_size": 512,
        "hidden_size": 64,
        "num_layers": 1,
        "num_kv_heads": 1,
        "intermediate_size": 64,
        "vision_depth": 1,
        "vision_hidden_size": 64,
        "vision_intermediate_size": 64,
    },
    "train": {"max_steps": 3, "batch_size": 2, "save_steps": 3},
    "eval_examples": 6,
}


def test_run_writes_a_base_checkpoint_with_its_perception_report(tmp_path: Path) -> None:
    config = {**_TINY, "probe_steps": 3, "probe_examples": 4, "hint": 0.5}
    result = run(from_dict(PretrainBaseConfig, config), tmp_path / "base")
    report = json.loads((tmp_path / "base" / "perception.json").read_text())
    assert report == result.perception
    assert {"seen/all", "unseen/all", "seen_hinted/all", "unseen_hinted/all"} <= report.keys()
    # the learning curve: one probe row at step 3, per skill and split
    (row,) = [json.loads(line) for line in (tmp_path / "base" / "probe.jsonl").open()]
    assert row["step"] == 3 and {"seen/all", "unseen/all"} <= row.keys()
    assert all(0.0 <= v <= 1.0 for v in report.values())
    model, processor = load_checkpoint(tmp_path / "base")
    assert model.config.text_config.num_hidden_layers == 1
    assert processor.tokenizer.eos_token == "<|im_end|>"


def test_a_later_phase_continues_from_the_earlier_checkpoint(tmp_path: Path) -> None:
    """Phase 2 (`init_from` + a grounding `mix`) starts from phase 1's weights and tokenizer,
    trains them further, and reports the grounding skills it was trained on."""
    import torch

    run(from_dict(PretrainBaseConfig, {**_TINY, "eval_examples": 0}), tmp_path / "p1")
    mix = {"which_image": 1.0, "verify_image": 1.0, "check_answer": 1.0}
    phase2 = from_dict(
        PretrainBaseConfig,
        {**_TINY, "init_from": str(tmp_path / "p1"), "mix": mix, "eval_examples": 12},
    )
    result = run(phase2, tmp_path / "p2")
    kinds = {k.split("/", 1)[1] for k in result.perception}
    kinds = {k for k in kinds if not k.startswith("all")}  # all, all_compare, ...
    assert kinds and kinds <= set(mix)
    (m1, p1), (m2, p2) = load_checkpoint(tmp_path / "p1"), load_checkpoint(tmp_path / "p2")
    assert p1.tokenizer.get_vocab() == p2.tokenizer.get_vocab()
    s1, s2 = m1.state_dict(), m2.state_dict()
    assert s1.keys() == s2.keys()
    assert any(not torch.equal(s1[k], s2[k]) for k in s1)


def test_question_first_puts_the_question_before_the_items_in_its_share_of_the_stream() -> None:
    """`question_first` moves the question before the items ("Which image ...? Image 1: <image>
    Image 2: <image>") in about its share of the examples, and changes nothing else."""
    config = from_dict(PretrainBaseConfig, {"mix": {"which_image": 1.0}, "question_first": 0.5})
    plain = from_dict(PretrainBaseConfig, {"mix": {"which_image": 1.0}})
    firsts = [asks_first(config, i) for i in range(400)]
    assert 150 < sum(firsts) < 250 and not any(asks_first(plain, i) for i in range(400))
    i = firsts.index(True)
    ex = corpus_example(config, i)
    assert ex.question == corpus_example(plain, i).question  # the examples are the same
    first = perception_to_example(ex, question_first=True)["prompt"][0]["content"]
    last = perception_to_example(ex, question_first=False)["prompt"][0]["content"]
    assert [c.get("text") for c in first] == [ex.question, "Image 1:", None, "Image 2:", None]
    assert [c.get("text") for c in last] == ["Image 1:", None, "Image 2:", None, ex.question]
    with pytest.raises(ValueError, match="question_first"):
        from_dict(PretrainBaseConfig, {"question_first": 1.5})


def test_hint_says_what_the_items_show_before_the_question_in_its_share_of_the_stream() -> None:
    """`hint` puts the items' ground truth in words before the question of the skills that check
    a text against the items, in about its share of the stream; the probe scores both ways."""
    mix = {"which_image": 1.0, "check_answer": 1.0, "attribute": 1.0}
    config = from_dict(PretrainBaseConfig, {"mix": mix, "hint": 0.5})
    draws = [gets_hint(config, i) for i in range(400)]
    assert 150 < sum(draws) < 250
    examples = [corpus_example(config, i) for i in range(60)]
    by_kind = {ex.kind or ex.question.split()[0]: ex for ex in examples}
    which = next(ex for ex in examples if ex.question.startswith("Which image shows"))
    scenes = which.hint.split(". ")
    assert len(scenes) == 2 and scenes[0].startswith("Image 1 shows a")
    # the hint names the answer's item: "Which image shows <caption>?" -> image k shows <caption>
    caption = which.question.removeprefix("Which image shows ").removesuffix("?")
    k = int(which.answer.split()[-1])
    assert f"Image {k} shows {caption}" in which.hint
    assert by_kind["colour"].hint == ""  # naming skills have nothing to check
    text = perception_to_example(which, hint=True)["prompt"][0]["content"][-1]["text"]
    assert text == f"{which.hint}\n{which.question}"
    plain = perception_to_example(which)["prompt"][0]["content"][-1]["text"]
    assert plain == which.question
    with pytest.raises(ValueError, match="hint"):
        from_dict(PretrainBaseConfig, {"hint": -0.1})


def test_an_unknown_perception_skill_in_the_mix_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown perception skill"):
        from_dict(PretrainBaseConfig, {"mix": {"describe_image": 1.0, "telepathy": 1.0}})


def _words(text: str) -> list[str]:
    return text.lower().replace("\n", " ").split()


def _ngrams(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def _contract_ngrams(n: int) -> set[tuple[str, ...]]:
    """Every n-word run of the judge's own instruction text (its prompt templates, direct and
    CoT, pairwise and pointwise), with the judged data (question, answers, caption) left out."""
    from unireward.contract import build_messages
    from unireward.tasks import MODES, TASKS

    grams: set[tuple[str, ...]] = set()
    for task, mode, cot in itertools.product(TASKS, MODES, (False, True)):
        if cot and mode != Mode.PAIRWISE:
            continue
        n_items = 2 if task.is_generation and mode == Mode.PAIRWISE else 1
        responses = [] if task.is_generation else ["zzdata"] * (2 if mode == Mode.PAIRWISE else 1)
        frames = 4 if task.is_video else 1
        content = build_messages(task, mode, "zzdata", responses, n_items, frames, cot)[0]
        text = " ".join(part["text"] for part in content["content"] if part["type"] == "text")
        grams |= {g for g in _ngrams(_words(text), n) if not any("zzdata" in w for w in g)}
    return grams


@pytest.mark.parametrize(
    "params, profile",
    [
        (DEFAULT_PARAMS, "quick"),
        (REPO / "configs" / "base" / "phase3.yaml", None),
        (REPO / "configs" / "base" / "phase4.yaml", None),
        (REPO / "configs" / "base" / "phase5.yaml", None),
        (REPO / "experiments" / "base-wide" / "params.yaml", "wide"),
    ],
)
def test_the_pretraining_corpus_holds_no_contract_text(params: Path, profile: str) -> None:
    """The base must not already be the judge: no 6-word run of a judge prompt template and no
    contract answer string (verdicts, ties, "Final Score", the CoT tags) in what it is trained
    on -- the real stream of `run`, for each phase of the shipped base (1, 3, 4, 5),
    and the wide experiment's (the varied-instruction `pick_*` skills)."""
    config = load_stage_config(PretrainBaseConfig, "pretrain_base", profile=profile, path=params)
    contract = _contract_ngrams(6)
    assert len(contract) > 100
    answers = {a for pair in PAIR_ANSWERS.values() for a in pair} | set(TIE_ANSWERS.values())
    answers = {a.lower() for a in answers} | {"final score", "<think>", "<answer>"}
    kinds = Counter()
    for i in range(3000):
        ex = corpus_example(config, i)
        kinds[ex.kind] += 1
        for text in (ex.question, ex.answer, ex.hint):
            assert not (_ngrams(_words(text), 6) & contract), text
            assert not any(a in text.lower() for a in answers), text
    assert len(kinds) >= 20, kinds
