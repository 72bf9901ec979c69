"""Shared pieces of the model-zoo experiments: the argument syntax, ImageNet, and smoke runs.

Every zoo experiment takes ``--config=experiments/FILE.py:MODEL[,original][,smoke]``:
``MODEL`` picks a registered name of the family, ``original`` switches to the paper's form where
the model has one, and ``smoke`` swaps the dataset for the embedded MNIST (resized to the model's
minimum input size and tiled to 3 channels) with a few steps of Adam, so that every architecture
really trains offline on a CPU.
"""

from experiments import base


def parse(arg, default, choices):
  """``'vgg16,smoke'`` → ('vgg16', {'smoke'}); an unknown model or word is a clear error."""
  words = [w for w in (arg or default).split(",") if w]
  model = words[0] if words and words[0] in choices else default
  flags = set(words[1:] if words and words[0] in choices else words)
  bad = flags - {"smoke", "original"}
  if bad:
    raise ValueError(f"unknown experiment argument {sorted(bad)[0]!r}: use MODEL[,original]"
                     f"[,smoke] with MODEL in {', '.join(choices)}")
  return model, flags


def imagenet(c, *, batch_size, epochs):
  """ImageNet-1k from tfds (``imagenet2012``, a manual download; see cnnjax.data.prepare)."""
  c.dataset = "imagenet2012"
  c.data.train_split, c.data.eval_split = "train", "validation"
  c.data.crop, c.data.flip = 224, True
  c.data.in_memory = False
  c.data.num_threads = 16
  c.batch_size, c.eval_batch_size = batch_size, 500
  c.num_epochs = float(epochs)
  c.checkpoint_every_steps = 5000
  c.log_every_steps = 100
  return c


def smoke(c):
  """A few steps on the embedded MNIST, at the model's minimum input size, with Adam.

  Every step trains on the same 16 images (one batch), the classic check that a model can fit:
  on fresh batches the loss of a heavily regularised model (GoogLeNet, Inception v3: dropout,
  auxiliary heads) moves less in 8 steps than the batch-to-batch noise.
  """
  c.dataset = "mnist5k"
  c.data.train_split, c.data.eval_split = "train[:16]", "test[:64]"
  c.data.crop = c.data.resize = None
  c.data.flip, c.data.max_shift = False, 0
  c.data.in_memory, c.data.num_threads = True, 2
  c.data.image_size = None  # the model's minimum input size (MNIST's 28 where that is smaller)
  c.batch_size, c.eval_batch_size = 16, 64
  c.num_steps = 8
  c.optimizer.name, c.optimizer.learning_rate = "adam", 1e-3
  c.optimizer.weight_decay = 0.0
  c.schedule.name, c.schedule.warmup_epochs, c.schedule.decay_epochs = "constant", 0.0, ()
  c.label_smoothing = 0.0
  c.log_every_steps, c.eval_every_epochs, c.checkpoint_every_steps = 1, 0.0, 1000
  return c


def finish(c, model, flags, original_ok=True):
  c.model = model
  if "original" in flags:
    if not original_ok:
      raise ValueError(f"{model} has no 'original' form")
    c.model_options.original = True
  return smoke(c) if "smoke" in flags else c


def base_config():
  c = base.get_config()
  c.model_options.original = base.none(bool)
  return c
