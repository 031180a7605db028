"""Training: the state, its recipe and a run's set-up (`state`), the pure step (`step`), the
loop (`loop`), losses, optimizers, warm starts, fault injection, and `--mode=import` (a
PyTorch file into a training checkpoint)."""
