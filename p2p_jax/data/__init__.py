"""Input: sources (folders, ArrayRecord, TFDS, the embedded scenes), decoding, transforms,
derived tasks and the Grain pipeline."""
