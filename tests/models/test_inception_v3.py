"""Inception v3: exact sizes, forward in both modes, options, aux head, torchvision parity."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax.errors import UserError
from cnnjax.models import inception_v3, registry
from cnnjax.transfer import tv_inception_v3
from tests.models.common import (fast_apply, noise_variables, normal_input, param_count,
                                 randomise_bn, tree_shapes)


@pytest.mark.parametrize("aux, count", [(True, 27_161_264), (False, 23_834_568)])
def test_param_count(aux, count):
  model = registry.create("inception_v3", aux_logits=aux)
  assert param_count(model, 299) == count
  assert param_count(model, 75) == count  # the aux head makes its parameters at the minimum too


@pytest.mark.e2e
def test_forward_at_min_size():
  spec = registry.get_spec("inception_v3")
  model = registry.create("inception_v3")
  x = normal_input(spec.min_input_size)
  variables = noise_variables(model, x)
  for train in (False, True):
    logits, state = fast_apply(model, variables, x, train)
    assert logits.shape == (2, 1000) and logits.dtype == jnp.float32
    assert np.isfinite(np.asarray(logits)).all()
    inter = state["intermediates"]
    expected = {"stem", "stage1", "stage2", "stage3", "pre_logits"}
    assert set(inter) == expected | ({"aux_logits"} if train else set())
    assert inter["stage1"][0].shape == (2, 7, 7, 288)
    assert inter["stage3"][0].shape == (2, 1, 1, 2048)
    # BatchNorm statistics move in train mode only.
    stats = state.get("batch_stats", variables["batch_stats"])
    moved = not np.allclose(stats["Conv2d_1a_3x3"]["bn"]["mean"],
                            variables["batch_stats"]["Conv2d_1a_3x3"]["bn"]["mean"])
    assert moved == train
  (aux,) = inter["aux_logits"]
  assert aux.shape == (2, 1000) and aux.dtype == jnp.float32 and np.isfinite(aux).all()


def test_too_small_raises():
  with pytest.raises(UserError, match="75"):
    param_count(registry.create("inception_v3"), 74)


@pytest.mark.e2e
def test_options_build_and_run():
  # Combined, so that they cost one compilation; train mode runs every layer.
  model = registry.create("inception_v3", aux_logits=False, activation="leaky_relu",
                          negative_slope=0.1, pool="avg", dtype="bfloat16", dropout=0.2)
  x = normal_input(75)
  variables = noise_variables(model, x)
  assert "AuxLogits" not in variables["params"]
  logits, state = fast_apply(model, variables, x, True)
  assert logits.dtype == jnp.float32 and np.isfinite(np.asarray(logits)).all()
  assert "aux_logits" not in state["intermediates"]


# --- parity with torchvision ------------------------------------------------------------------

@pytest.fixture(scope="module")
def torch_net():
  torch = pytest.importorskip("torch")
  torchvision = pytest.importorskip("torchvision")
  torch.manual_seed(0)
  # PyTorch's default init: torchvision's (std 0.1) makes logits of ~100, whose float32
  # rounding alone exceeds the 1e-4 tolerance.
  net = torchvision.models.inception_v3(weights=None, aux_logits=True, transform_input=False,
                                        init_weights=False)
  aux, net.AuxLogits = net.AuxLogits, None  # its 5×5 conv needs Mixed_6e ≥ 17×17
  randomise_bn(torch, net, torch.randn(4, 3, 107, 107))
  net.AuxLogits = aux
  randomise_bn(torch, aux, torch.randn(4, 768, 17, 17))
  return torch, net


@pytest.mark.e2e
def test_parity_with_torchvision(torch_net):
  torch, net = torch_net
  size = 107  # Mixed_5 at 11×11, Mixed_6 at 5×5, Mixed_7 at 2×2
  x = np.random.default_rng(0).standard_normal((2, 3, size, size)).astype(np.float32)
  with torch.no_grad():
    want = net(torch.from_numpy(x)).numpy()
  model = registry.create("inception_v3")
  variables = tv_inception_v3.CONVERTERS["inception_v3"](net.state_dict())
  xj = jnp.asarray(x.transpose(0, 2, 3, 1))
  assert tree_shapes(variables) == tree_shapes(noise_variables(model, xj))
  got, _ = fast_apply(model, variables, xj, False)
  assert np.abs(want).std() > 0.1
  assert np.max(np.abs(np.asarray(got) - want)) <= 1e-4

  plain = tv_inception_v3.inception_v3(net.state_dict(), aux_logits=False)
  no_aux = registry.create("inception_v3", aux_logits=False)
  assert tree_shapes(plain) == tree_shapes(noise_variables(no_aux, xj))


@pytest.mark.e2e
@pytest.mark.parametrize("size", [17, 20])  # inputs 299 and 347; 17×17 → 5×5 → 1×1
def test_aux_head_parity_with_torchvision(torch_net, size):
  torch, net = torch_net
  x = np.random.default_rng(1).standard_normal((2, 768, size, size)).astype(np.float32)
  with torch.no_grad():
    want = net.AuxLogits(torch.from_numpy(x)).numpy()
  variables = tv_inception_v3.inception_v3(net.AuxLogits.state_dict())  # keys without prefix
  head = inception_v3.InceptionAux(num_classes=1000)
  got = head.apply(variables, jnp.asarray(x.transpose(0, 2, 3, 1)))
  assert np.max(np.abs(np.asarray(got) - want)) <= 1e-4
