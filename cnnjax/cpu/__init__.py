"""cnnjax's CPU backend: oneDNN convolutions and batch normalization through XLA's FFI, and max
pooling as strided slices, for plain ``flax.linen`` models.

Models never import this package. An entry point (launch.py, the benchmarks, a notebook) opts in
with one call around the code that traces the steps::

  from cnnjax import cpu
  with cpu.lowering():
    state, metrics = train_step(state, batch, key)  # traced (and compiled) in here

Inside, ``nn.Conv`` (and modules with the same ``conv_general_dilated`` field, e.g. LeNet's C3),
training-mode ``nn.BatchNorm`` over 4-D float32 activations and max ``layers.Pool`` run as this
backend's ops (``intercept.py``); everything else, and every variable, stays the model's own, so
the parameter tree is the same with and without it. ``lowering`` builds and loads the extension
(``build.py``; one notice line on stderr and XLA's own convolutions and batch normalization if it
can't) and registers its FFI targets on entry, which must come before anything compiles or loads
from JAX's persistent compilation cache. It does nothing unless JAX's default backend is CPU.
``CNNJAX_ONEDNN=0`` keeps XLA's own convolutions and batch normalization (to compare).

jit caches a function's trace without regard to the lowering: call a jitted step for the first
time inside ``lowering`` (or jit it anew) for it to take effect. Analyses that read the traced
layers (``cnnjax.inspect``: tables, receptive fields, Grad-CAM) want the plain ones: run them
outside ``lowering``, as ``python -m cnnjax.inspect`` does.
"""

from cnnjax.cpu.intercept import interceptor, lowering, onednn_loaded

__all__ = ["interceptor", "lowering", "onednn_loaded"]
