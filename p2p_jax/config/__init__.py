"""Configs: the names of the choices, image sizes, the checks every config passes, the
defaults of every key, and a run's saved config.json read back."""
