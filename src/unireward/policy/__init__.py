"""Policy alignment (stages 11-13): the shapes-world QA policy, pair construction with the
judge, TRL DPO, and the policy's evaluation against ground truth."""
