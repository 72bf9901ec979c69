"""Every config key cnnjax reads, with its one default. Experiment files start from this.

Durations are in epochs of the training split (``num_epochs``), or in steps when ``num_steps``
is set; schedules are given in epochs and converted to steps in code from the final config, so
command-line overrides of the batch size or the duration never leave them stale.
"""

from ml_collections import ConfigDict, FieldReference


def none(kind):
  """A field that defaults to None but can be overridden from the command line."""
  return FieldReference(None, field_type=kind)


def get_config(arg=None):
  del arg
  c = ConfigDict()
  c.seed = 0
  c.model = "lenet5"
  # Options passed to cnnjax.models.create; None keeps the model's own default.
  c.model_options = ConfigDict({
      "activation": none(str),  # relu | leaky_relu | elu | gelu
      "negative_slope": none(float),  # leaky ReLU's slope for x < 0
      "pool": none(str),  # max | avg
      "dropout": none(float),
      "dtype": "float32",  # compute precision: float32 | bfloat16
  })
  c.num_classes = none(int)  # default: the dataset's number of classes

  c.dataset = "mnist5k"  # embedded: mnist5k, uci_digits; any prepared tfds dataset; folder:/path
  c.data = ConfigDict({
      "data_dir": none(str),  # default: $TFDS_DATA_DIR or ~/tensorflow_datasets
      "train_split": "train",
      "eval_split": "test",
      "image_size": none(int),  # default: the data's size, raised to the model's minimum
      "channels": none(int),  # default: the model's input channels (grey is tiled)
      # ImageNet-style crops, required for images of varying size (imagenet2012, food101, ...):
      # train takes a random-resized crop of crop×crop, eval resizes the shorter side to
      # `resize` (default round(crop / 0.875): 224 → 256) and takes the centre crop.
      "crop": none(int),
      "resize": none(int),
      "max_shift": 0,  # random translation by up to this many pixels
      "flip": False,  # random left-right flips
      "train_per_class": none(int),  # few-label training: a seeded stratified subset
      "val_fraction": 0.2,  # image folders (dataset='folder:/path'): held-out share per class
      "in_memory": True,  # decode the splits once into memory (skipped above 2 GiB decoded)
      "num_threads": 2,  # grain reader threads
  })

  c.batch_size = 128  # global, over all devices and processes
  c.eval_batch_size = 512  # rounded up to a multiple of the devices; padded and masked
  c.num_epochs = 10.0
  c.num_steps = none(int)  # overrides num_epochs when set

  c.optimizer = ConfigDict({
      "name": "adam",  # sgd | momentum | nesterov | adam | adamw | rmsprop
      "learning_rate": 1e-3,
      "momentum": 0.9,
      "weight_decay": 0.0,
      "decay_all": False,  # also decay biases and norm scales
      "b1": 0.9,
      "b2": 0.999,
      "eps": 1e-8,
      "decay": 0.9,  # rmsprop's squared-gradient decay
      "grad_clip_norm": none(float),
  })
  c.schedule = ConfigDict({
      "name": "cosine",  # constant | cosine | step
      "warmup_epochs": 0.0,
      "decay_epochs": (),  # for "step": epochs at which the rate is multiplied by decay_factor
      "decay_factor": 0.1,
      "final_lr_fraction": 0.0,  # for "cosine"
  })
  c.label_smoothing = 0.0

  # Transfer learning: initialise from a training workdir, a checkpoints directory or converted
  # weights (python -m cnnjax.convert_torchvision); init_skip lists regexes of leaves to keep
  # fresh ('head' = every num_classes-dependent leaf). Loading is strict otherwise.
  c.init_from = none(str)
  c.init_skip = ()
  c.finetune = ConfigDict({
      "mode": "full",  # full | linear_probe | freeze
      "freeze_until": none(str),  # for "freeze": last frozen layer (name prefix)
      "lr_multipliers": (),  # ('PATTERN:MULT', ...), e.g. ('layer1:0.1',)
  })

  c.log_every_steps = 50
  c.eval_every_epochs = 1.0  # 0: evaluate only at the end
  c.checkpoint_every_steps = 500
  c.keep_checkpoints = 3
  return c
