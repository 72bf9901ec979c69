"""LeNet-5, both forms: the feature-map sizes of Fig. 2, C3's partial connections (Table I), the
RBF output layer, and the options the course discusses (pooling, activation)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax import models
from cnnjax.models import lenet

X = jax.random.uniform(jax.random.key(0), (2, 28, 28, 1))


def _sown(model, variables, x):
  _, state = model.apply(variables, x, mutable=["intermediates"])
  return {k: v[0].shape for k, v in state["intermediates"].items()}


def test_modern_form_maps_follow_fig_2():
  model = models.create("lenet5")
  variables = models.init_variables(model, jax.random.key(1), X.shape)
  assert _sown(model, variables, X) == {"stem": (2, 28, 28, 6), "stage1": (2, 14, 14, 6),
                                        "stage2": (2, 5, 5, 16), "pre_logits": (2, 84)}


def test_original_c3_reads_only_the_maps_of_table_1():
  c3 = lenet.PartialConv()
  x = jax.random.normal(jax.random.key(2), (1, 14, 14, 6))
  params = c3.init(jax.random.key(3), x)
  assert params["params"]["kernel"].size == 25 * 60  # 60 connections of 5×5, as Table I
  # Changing S2 map 5 moves only the C3 maps whose row of the table lists 5.
  y = c3.apply(params, x)
  y2 = c3.apply(params, x.at[..., 5].add(1.0))
  moved = np.abs(np.asarray(y2 - y)).max(axis=(0, 1, 2)) > 0
  assert moved.tolist() == [5 in row for row in lenet.C3_TABLE]


def test_original_output_is_minus_the_rbf_distance():
  model = models.create("lenet5", original=True)
  variables = models.init_variables(model, jax.random.key(4), X.shape)
  logits = model.apply(variables, X)
  assert logits.shape == (2, 10) and bool(jnp.all(logits <= 0))


@pytest.mark.parametrize("options", [{"pool": "avg"}, {"activation": "leaky_relu"},
                                     {"activation": "elu"}])
def test_each_option_changes_the_function_not_the_parameters(options):
  base, other = models.create("lenet5"), models.create("lenet5", **options)
  variables = models.init_variables(base, jax.random.key(5), X.shape)
  shapes = lambda m: jax.tree.map(jnp.shape, models.abstract_variables(m, X.shape))
  assert shapes(base) == shapes(other)
  assert not np.allclose(base.apply(variables, X), other.apply(variables, X))
