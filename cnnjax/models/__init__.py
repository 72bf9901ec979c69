"""The model zoo: every architecture of the course as a pure ``flax.linen`` module.

The contract every registered model keeps:

* Input is NHWC. ``model.init(rngs, x, train=False)`` creates every parameter (auxiliary heads
  included); ``model.apply(variables, x, train=..., rngs={'dropout': key},
  mutable=['batch_stats'])`` returns the logits, always a float32 array of shape
  ``(batch, num_classes)``.
* Named features are sown into the ``intermediates`` collection of the top-level module:
  ``stem``, ``stage1`` ... ``stageN``, ``pre_logits`` and, in train mode only, ``aux_logits``
  (one entry per auxiliary head). Ask for them with ``mutable=['intermediates']``.
* ``dtype`` sets the compute precision (``'bfloat16'`` works); parameters stay float32.
* Activation and pooling are options where the course discusses them: ``activation`` in
  ``relu | leaky_relu | elu | gelu`` (leaky slope ``negative_slope``, default 0.01) and ``pool``
  in ``max | avg``.
* BatchNorm follows PyTorch's defaults (momentum 0.1, i.e. flax ``momentum=0.9``; eps 1e-5) and
  convolutions pad explicitly and symmetrically, so torchvision weights reproduce its numbers.
"""

from cnnjax.models.registry import (abstract_variables, check_options, create, get_spec,
                                    init_variables, names, options)
from cnnjax.models.spec import ModelSpec

__all__ = ["ModelSpec", "abstract_variables", "check_options", "create", "get_spec",
           "init_variables", "names", "options"]
