"""Transfer learning offline: LeNet-5 pretrained on the embedded MNIST, transferred to
scikit-learn's UCI 8×8 digits (upsampled to 28×28) with few labels per class.

  :pretrain      LeNet-5 on mnist5k (10 epochs)
  :linear_probe  UCI digits, 2 labels per class, from the pretrained weights, only the head trains
  :finetune      the same, every layer trains
  :scratch       the same, from a random init

``python -m cnnjax.transfer.demo`` runs all of them over several seeds and prints the table.
The transfer runs need ``--config.init_from=WORKDIR_OF_PRETRAIN``.
"""

from experiments import base

MODES = ("pretrain", "linear_probe", "finetune", "scratch")


def get_config(arg=None):
  mode = arg or "pretrain"
  if mode not in MODES:
    raise ValueError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
  c = base.get_config()
  c.model = "lenet5"
  c.optimizer.name, c.schedule.name = "adam", "cosine"
  if mode == "pretrain":
    c.dataset, c.num_epochs = "mnist5k", 10.0
    c.data.max_shift = 2
    c.optimizer.learning_rate = 2e-3
    return c
  c.dataset = "uci_digits"  # 8×8 digits, resized to LeNet-5's 28×28 on device
  c.data.train_per_class = 2
  c.batch_size, c.num_steps = 10, 150
  c.eval_every_epochs, c.log_every_steps, c.checkpoint_every_steps = 0.0, 50, 150
  c.optimizer.learning_rate = 1e-3 if mode == "finetune" else 3e-3
  if mode != "scratch":
    c.init_skip = ("head",)
  if mode == "linear_probe":
    c.finetune.mode = "linear_probe"
  return c
