"""Traced models shared by the tests of this package (tracing the big ones takes seconds)."""

import functools

from cnnjax import models
from cnnjax.inspect import graph, summary


@functools.cache
def traced(name, size=None, **options):
  """The model's graph at ``size`` (default: its natural size), batch 1, no weights."""
  spec = models.get_spec(name)
  model = models.create(name, **options)
  shape = (1, size or spec.input_size, size or spec.input_size, spec.channels)
  return graph.trace(model, models.abstract_variables(model, tuple(shape)), shape)


def table(name, size=None, **options):
  return summary.of_graph(name, traced(name, size, **options), models.get_spec(name).num_classes)
