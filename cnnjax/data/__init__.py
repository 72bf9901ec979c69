"""Data: tfds builders for the embedded datasets, sources by name, transforms, grain pipelines."""
