"""GoogLeNet: exact sizes, forward in both modes, every option, aux heads, torchvision parity."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax.errors import UserError
from cnnjax.models import registry
from cnnjax.transfer import tv_googlenet
from tests.models.common import (fast_apply, noise_variables, normal_input, param_count,
                                 randomise_bn, tree_shapes)

# torchvision's counts; the paper's form: BN → conv bias and the 5×5 branch really 5×5.
COUNTS = [
    (dict(), 6_624_904),
    (dict(aux_logits=True), 13_004_888),
    (dict(original=True), 6_998_552),
    (dict(original=True, aux_logits=True), 13_378_280),
]

@pytest.mark.parametrize("opts, count", COUNTS)
def test_param_count(opts, count):
  assert param_count(registry.create("googlenet", **opts), 224) == count


@pytest.mark.e2e
def test_forward_at_min_size_with_aux_heads():
  spec = registry.get_spec("googlenet")
  model = registry.create("googlenet", aux_logits=True)
  x = normal_input(spec.min_input_size)
  assert param_count(model, spec.min_input_size) == 13_004_888  # init creates the aux heads
  variables = noise_variables(model, x)
  for train in (False, True):
    logits, state = fast_apply(model, variables, x, train)
    assert logits.shape == (2, 1000) and logits.dtype == jnp.float32
    assert np.isfinite(np.asarray(logits)).all()
    inter = state["intermediates"]
    expected = {"stem", "stage1", "stage2", "stage3", "pre_logits"}
    assert set(inter) == expected | ({"aux_logits"} if train else set())
    assert inter["stage3"][0].shape == (2, 1, 1, 1024)
    assert inter["pre_logits"][0].shape == (2, 1024)
    # BatchNorm statistics move in train mode only.
    stats = state.get("batch_stats", variables["batch_stats"])
    moved = not np.allclose(stats["conv1"]["bn"]["mean"],
                            variables["batch_stats"]["conv1"]["bn"]["mean"])
    assert moved == train
  aux = inter["aux_logits"]
  assert len(aux) == 2 and all(a.shape == (2, 1000) and a.dtype == jnp.float32 for a in aux)


def test_too_small_raises():
  with pytest.raises(UserError, match="15"):
    param_count(registry.create("googlenet"), 14)
  with pytest.raises(UserError, match="31"):
    param_count(registry.create("googlenet", original=True), 30)


# Options combined, so that each costs no extra compilation; train mode runs every layer.
@pytest.mark.e2e
@pytest.mark.parametrize("opts, size", [
    (dict(activation="leaky_relu", negative_slope=0.1, pool="avg", dtype="bfloat16",
          aux_logits=True), 15),
    (dict(original=True, aux_logits=True, activation="elu", dropout=0.5), 31),
])
def test_options_build_and_run(opts, size):
  model = registry.create("googlenet", **opts)
  x = normal_input(size)
  variables = noise_variables(model, x)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables["params"]))
  logits, state = fast_apply(model, variables, x, True)
  assert logits.dtype == jnp.float32 and np.isfinite(np.asarray(logits)).all()
  assert len(state["intermediates"]["aux_logits"]) == 2


# --- parity with torchvision ------------------------------------------------------------------

@pytest.mark.e2e
def test_parity_with_torchvision():
  torch = pytest.importorskip("torch")
  torchvision = pytest.importorskip("torchvision")
  torch.manual_seed(0)
  size = 57  # odd sizes exercise ceil_mode; the aux heads pool 3×3 → 4×4
  net = torchvision.models.googlenet(weights=None, aux_logits=True, transform_input=False,
                                     init_weights=True, dropout=0.0, dropout_aux=0.0)
  randomise_bn(torch, net, torch.randn(4, 3, size, size))
  state_dict = {k: v.clone() for k, v in net.state_dict().items()}  # before train mode
  x = np.random.default_rng(0).standard_normal((2, 3, size, size)).astype(np.float32)
  with torch.no_grad():
    want = net(torch.from_numpy(x)).numpy()
    net.train()
    want_train = [t.numpy() for t in net(torch.from_numpy(x))]  # logits, aux2, aux1

  model = registry.create("googlenet", aux_logits=True, dropout=0.0, aux_dropout=0.0)
  variables = tv_googlenet.CONVERTERS["googlenet"](state_dict, aux_logits=True)
  xj = jnp.asarray(x.transpose(0, 2, 3, 1))
  assert tree_shapes(variables) == tree_shapes(noise_variables(model, xj))
  got, _ = fast_apply(model, variables, xj, False)
  assert np.abs(want).std() > 0.1
  assert np.max(np.abs(np.asarray(got) - want)) <= 1e-4

  got_train, state = fast_apply(model, variables, xj, True)
  aux1, aux2 = state["intermediates"]["aux_logits"]
  for ours, theirs in zip((got_train, aux2, aux1), want_train):
    assert np.max(np.abs(np.asarray(ours) - theirs)) <= 1e-4

  # Without aux heads the converter drops them and the trees match again.
  plain = tv_googlenet.googlenet(state_dict)
  assert tree_shapes(plain) == tree_shapes(noise_variables(registry.create("googlenet"), xj))
