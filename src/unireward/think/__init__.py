"""UnifiedReward-Think stages: cold start (CoT distillation from a teacher VLM), then later
rejection sampling and GRPO (shared/DESIGN.md stages 4-7)."""
