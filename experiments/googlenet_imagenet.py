"""GoogLeNet on ImageNet (Szegedy et al. 2015, §6): SGD with momentum 0.9, learning rate decreased
by 4% every 8 epochs, auxiliary classifiers weighted 0.3 during training. Batch and base rate are
not in the paper; these are torchvision's reference values (batch 256, learning rate 0.1 here with
the paper's decay). ``:googlenet,original`` is the paper's form (5×5 convs, LRN, no BatchNorm)."""

from experiments import zoo


def get_config(arg=None):
  model, flags = zoo.parse(arg, "googlenet", ["googlenet"])
  c = zoo.imagenet(zoo.base_config(), batch_size=256, epochs=120)
  c.model_options.aux_logits = True  # trained with the aux heads (loss weight 0.3)
  c.optimizer.update(name="momentum", learning_rate=0.1, momentum=0.9, weight_decay=1e-4)
  c.schedule.update(name="step", decay_epochs=tuple(range(8, 120, 8)), decay_factor=0.96)
  return zoo.finish(c, model, flags)
