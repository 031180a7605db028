"""Evaluation: generation on images of any size (`generate`), per-image metrics, the pluggable
evaluators (FID/KID, FCN-score), image grids and the `--mode=eval` report."""
