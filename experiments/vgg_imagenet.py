"""VGG on ImageNet (Simonyan & Zisserman 2015, §3.1): SGD, batch 256, momentum 0.9, weight decay
5e-4, learning rate 0.01 divided by 10 when validation stalls (three times; here at epochs 30, 50,
65), 74 epochs, dropout 0.5. ``:vgg16``, ``:vgg19_bn``, ... (``_bn``: torchvision's BatchNorm
variants, learning rate 0.1 as its reference recipe)."""

from experiments import zoo

MODELS = ["vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"]


def get_config(arg=None):
  model, flags = zoo.parse(arg, "vgg16", MODELS)
  c = zoo.imagenet(zoo.base_config(), batch_size=256, epochs=74)
  lr = 0.1 if model.endswith("_bn") else 0.01
  c.optimizer.update(name="momentum", learning_rate=lr, momentum=0.9, weight_decay=5e-4)
  c.schedule.update(name="step", decay_epochs=(30, 50, 65), decay_factor=0.1)
  c.model_options.original = None
  return zoo.finish(c, model, flags, original_ok=False)
