"""policy_sft: the shipped policy's training rows (the base taught to confuse answers).

.venv/bin/pytest tests/test_policy_sft.py -q
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "models" / "policy-tiny"


def test_confused_policy_training_rows() -> None:
    from unireward.policy.policy_sft import PolicySftConfig, confused, training_row

    assert confused("position", "top left") == "top right" and confused("shape", "cross") is None
    cfg = PolicySftConfig(confusion_rate=1.0)
    rows = [training_row(i, cfg) for i in range(30)]
    assert training_row(7, cfg)["completion"] == rows[7]["completion"]  # a pure function of i
    answers = {r["completion"][0]["content"][0]["text"] for r in rows}
    assert "red" not in answers and "circle" not in answers  # always confused at rate 1
