"""Inception v3 on ImageNet (Szegedy et al. 2016, §8): RMSProp (decay 0.9, ε 1.0), learning rate
0.045 decayed by 0.94 every 2 epochs, gradient clipping at 2.0, label smoothing 0.1, auxiliary
head weighted 0.4; 299×299 crops. The paper trained with 50 replicas of batch 32: batch 1600 here
would need the same hardware, so batch 256 with the rate scaled linearly (0.045·256/1600)."""

from experiments import zoo


def get_config(arg=None):
  model, flags = zoo.parse(arg, "inception_v3", ["inception_v3"])
  c = zoo.imagenet(zoo.base_config(), batch_size=256, epochs=100)
  c.data.crop = 299
  c.optimizer.update(name="rmsprop", learning_rate=0.045 * 256 / 1600, decay=0.9, eps=1.0,
                     momentum=0.9,
                     grad_clip_norm=2.0)
  c.schedule.update(name="step", decay_epochs=tuple(range(2, 100, 2)), decay_factor=0.94)
  c.label_smoothing = 0.1
  c.model_options.original = None
  return zoo.finish(c, model, flags, original_ok=False)
