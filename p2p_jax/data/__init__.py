"""Input: sources (folders, ArrayRecord, TFDS, the embedded scenes), decoding, transforms,
derived tasks, the Grain pipeline, and the Cityscapes tables (`cityscapes`)."""
