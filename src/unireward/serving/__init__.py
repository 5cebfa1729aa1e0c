"""Stage 10, the judge in service: `serve` (vLLM's OpenAI-compatible server on a registered
judge) and `client` (typed verdicts and scores from it, on the `openai` SDK)."""
