"""UnifiedReward-Think stages (shared/DESIGN.md stages 4-7): `cold_start` (CoT distillation from
a teacher VLM, then SFT), `rejection_sample` (k CoT samples per pair: correct ones and hard
pairs), `rs_sft` (SFT on the correct ones) and `grpo` (RL on the hard pairs)."""
