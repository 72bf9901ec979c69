"""``graph.forward``: reading and perturbing named outputs through flax, against models split by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from cnnjax.errors import UserError
from cnnjax.inspect import graph, visualize
from tests.inspect import common

SHAPE = (1, 9, 9, 2)


class Tiny(nn.Module):
  """Two convolutions; ``stem`` is a function (ReLU) of conv1's output that conv2 alone reads."""

  twice: bool = False  # conv2 and conv3 both read stem: no single module call carries it

  @nn.compact
  def __call__(self, x, train: bool = False):
    h = nn.relu(nn.Conv(4, (3, 3), name="conv1")(x))
    self.sow("intermediates", "stem", h)
    y = nn.relu(nn.Conv(3, (3, 3), strides=2, name="conv2")(h))
    if self.twice:
      y = y + nn.Conv(3, (3, 3), strides=2, name="conv3")(h)
    self.sow("intermediates", "stage1", y)
    return nn.Dense(5, name="fc")(jnp.mean(y, axis=(1, 2)))


def _tiny(twice=False):
  model = Tiny(twice)
  variables = model.init(jax.random.key(0), jnp.zeros(SHAPE))
  x = jax.random.normal(jax.random.key(1), SHAPE)
  return model, variables, x, graph.trace(model, variables, SHAPE)


def _by_hand(variables, x):
  """conv1's output, stem, and the rest of the model as a function of stem."""
  p = variables["params"]
  pre = nn.Conv(4, (3, 3)).apply({"params": p["conv1"]}, x)

  def rest(stem):
    y = nn.relu(nn.Conv(3, (3, 3), strides=2).apply({"params": p["conv2"]}, stem))
    return nn.Dense(5).apply({"params": p["fc"]}, jnp.mean(y, axis=(1, 2)))

  return pre, nn.relu(pre), rest


def test_the_gradient_at_a_feature_map_is_the_hand_split_models():
  model, variables, x, g = _tiny()
  pre, stem, rest = _by_hand(variables, x)
  np.testing.assert_allclose(rest(stem), model.apply(variables, x), rtol=1e-6)
  cls = 2
  want = jax.grad(lambda s: rest(s)[0, cls])(stem)
  acts, grads = visualize.feature_gradient(g, variables, x, "stem", cls)
  np.testing.assert_allclose(acts, stem[0], rtol=1e-6)
  np.testing.assert_allclose(grads, want[0], rtol=1e-5, atol=1e-7)
  assert np.abs(want).max() > 0
  # conv1's own output sits before the ReLU: the chain rule multiplies by the ReLU's slope.
  acts, grads = visualize.feature_gradient(g, variables, x, "conv1", cls)
  np.testing.assert_allclose(acts, pre[0], rtol=1e-6)
  np.testing.assert_allclose(grads, (want * (pre > 0))[0], rtol=1e-5, atol=1e-7)
  # Grad-CAM is Selvaraju et al.'s formula on those numbers.
  m = np.maximum(np.einsum("hwc,c->hw", stem[0], want[0].mean(axis=(0, 1))), 0)
  m = np.asarray(jax.image.resize(m, (9, 9), method="bilinear"))
  np.testing.assert_allclose(visualize.grad_cam(g, variables, x, "stem", cls),
                             m / (m.max() + 1e-12), rtol=1e-4, atol=1e-6)


def test_sites_are_the_module_calls_that_carry_each_feature():
  *_, g = _tiny()
  assert (g.sites["stem"].module, g.sites["stem"].at) == ("conv2", "input")
  assert (g.sites["conv1"].module, g.sites["conv1"].at) == ("conv1", "output")
  assert g.sites["stage1"].module is None  # a ReLU's output that only a function (mean) reads
  *_, twice = _tiny(twice=True)
  assert twice.sites["stem"].module is None  # read by conv2 and conv3
  with pytest.raises(UserError, match="can't be perturbed"):
    graph.forward(twice, {}, jnp.zeros(SHAPE), add={"stem": jnp.zeros((1, 9, 9, 4))})


def test_functions_are_table_rows_but_not_taps():
  model, variables, x, g = _tiny()
  assert [layer.name for layer in g.layers] == ["conv1", "conv2", "global_pool1", "fc"]
  with pytest.raises(UserError, match="'global_pool1' is computed by a function.*conv1"):
    graph.forward(g, variables, x, ("global_pool1",))
  with pytest.raises(UserError, match="unknown layer 'conv9'.* Valid choices: conv1, conv2, fc, logits, stage1, stem.$"):
    visualize.feature_maps(g, variables, x, ["conv9"])


@pytest.mark.parametrize("name, options", [("lenet5", {}), ("lenet5", {"original": True}),
                                           ("resnet20", {})])
def test_every_sown_feature_map_of_a_model_can_be_perturbed(name, options):
  g = common.traced(name, **options)
  maps = visualize.spatial_layers(g)
  assert len(maps) >= 3 and all(g.sites[n].module for n in maps), g.sites
