"""ZFNet on ImageNet (Zeiler & Fergus 2013, §3): SGD, batch 128, learning rate 0.01, momentum
0.9, annealed by hand (here: divided by 10 at epochs 30 and 55), 70 epochs, dropout 0.5."""

from experiments import zoo


def get_config(arg=None):
  model, flags = zoo.parse(arg, "zfnet", ["zfnet"])
  c = zoo.imagenet(zoo.base_config(), batch_size=128, epochs=70)
  c.optimizer.update(name="momentum", learning_rate=0.01, momentum=0.9, weight_decay=5e-4)
  c.schedule.update(name="step", decay_epochs=(30, 55), decay_factor=0.1)
  c.model_options.original = None
  return zoo.finish(c, model, flags, original_ok=False)
