"""Training: the state and its builder (`state`), the pure step (`step`), the loop (`loop`),
losses, optimizers and fault injection."""
