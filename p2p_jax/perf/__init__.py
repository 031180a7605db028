"""Performance: the benchmark programs and the FLOP count they report."""
