"""Prepares a tfds dataset in the array_record format that training reads.

  python -m cnnjax.data cifar10 [--data_dir=DIR] [--manual_dir=DIR]

This is the only step that needs TensorFlow (``pip install tensorflow``) and, for most
datasets, network access; training reads the prepared files without either. ImageNet
(``imagenet2012``) needs its archives placed in ``--manual_dir`` first, as tfds documents.
The embedded datasets (mnist5k, uci_digits) need no preparation.
"""

from __future__ import annotations


def prepare(name: str, data_dir: str | None = None, manual_dir: str | None = None) -> str:
  """Downloads and prepares ``name``; returns the directory it was written to."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

  from cnnjax.data import sources  # pylint: disable=import-outside-toplevel
  data_dir = data_dir or sources.default_data_dir()
  builder = sources.get_builder(name, data_dir)
  config = tfds.download.DownloadConfig(manual_dir=manual_dir)
  builder.download_and_prepare(file_format="array_record", download_config=config)
  return builder.data_dir
