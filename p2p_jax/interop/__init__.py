"""Files of other frameworks: PyTorch state_dicts read and written without torch."""
