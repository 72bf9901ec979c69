"""AlexNet on ImageNet (Krizhevsky, Sutskever & Hinton 2012, §5): SGD, momentum 0.9, batch 128,
weight decay 5e-4, learning rate 0.01 divided by 10 three times (here at epochs 30, 60, 80),
90 epochs, dropout 0.5. ``:alexnet,original`` is the paper's two-tower form with LRN."""

from experiments import zoo


def get_config(arg=None):
  model, flags = zoo.parse(arg, "alexnet", ["alexnet"])
  c = zoo.imagenet(zoo.base_config(), batch_size=128, epochs=90)
  c.optimizer.update(name="momentum", learning_rate=0.01, momentum=0.9, weight_decay=5e-4)
  c.schedule.update(name="step", decay_epochs=(30, 60, 80), decay_factor=0.1)
  return zoo.finish(c, model, flags)
