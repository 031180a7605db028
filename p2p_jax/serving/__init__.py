"""Serving a trained generator restored alone (`restore`): `--mode=predict`, `--mode=export`
and `--mode=serve`."""
