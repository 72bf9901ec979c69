"""ResNet on ImageNet (He et al. 2016, §3.4): SGD, batch 256, momentum 0.9, weight decay 1e-4,
learning rate 0.1 divided by 10 at epochs 30, 60 and 80, 90 epochs. ``:resnet50`` (default),
``:resnet18`` ... ``:resnet152``; ``original`` puts the bottleneck's stride in the first 1×1 conv
(v1) instead of the 3×3 (v1.5, torchvision's)."""

from experiments import zoo

MODELS = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]


def get_config(arg=None):
  model, flags = zoo.parse(arg, "resnet50", MODELS)
  c = zoo.imagenet(zoo.base_config(), batch_size=256, epochs=90)
  c.optimizer.update(name="momentum", learning_rate=0.1, momentum=0.9, weight_decay=1e-4)
  c.schedule.update(name="step", decay_epochs=(30, 60, 80), decay_factor=0.1)
  return zoo.finish(c, model, flags)
