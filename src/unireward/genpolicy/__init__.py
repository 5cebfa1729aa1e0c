"""The generator half of the alignment results (issue 22): a tiny text-to-image policy for the
shapes world, judge-built preference pairs, Diffusion-DPO, and a programmatic measure of caption
alignment (`check`)."""
