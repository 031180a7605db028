"""Serving a trained generator: the one restore path, `--mode=predict` and `--mode=export`."""
