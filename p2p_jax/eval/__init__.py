"""Evaluation: per-image metrics and scoring (`metrics`, `scoring`), the pluggable evaluators
(FID/KID, FCN-score), image grids and the `--mode=eval` report."""
