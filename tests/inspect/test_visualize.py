"""``visualize`` on a LeNet-5 trained by the default experiment for a few dozen steps.

The pictures are checked through the numbers ``write_all`` returns with them: one tile per
first-layer filter, activation maximisation well above the starting noise, the effective
receptive field inside the theoretical one.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax import config as config_lib
from cnnjax.errors import UserError
from cnnjax.inspect import graph, loading, pictures, visualize
from cnnjax.train import loop

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAYERS = ("stem", "stage1", "stage2")  # LeNet-5's sown feature maps


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, data_dir):
  c = config_lib.load(os.path.join(ROOT, "experiments/lenet_mnist.py"))
  c.data.data_dir = data_dir
  c.num_steps, c.log_every_steps, c.checkpoint_every_steps = 40, 20, 40
  c.eval_every_epochs = 0.0
  workdir = str(tmp_path_factory.mktemp("lenet"))
  loop.train(c, workdir, devices=jax.devices()[:1])
  return workdir


@pytest.fixture(scope="module")
def item(run_dir):
  return loading.load(run_dir)


@pytest.fixture(scope="module")
def report(item, run_dir):
  return pictures.write_all(item, os.path.join(run_dir, "inspect"), steps=64, num_images=300,
                            top_k=4)


@pytest.mark.e2e
def test_writes_every_picture(report, run_dir):
  expected = {"filters.png", "receptive_fields.png", "saliency_gradcam.png"} | {
      f"{kind}_{layer}.png" for kind in ("features", "maximisation", "top_patches")
      for layer in LAYERS}
  assert set(report) == expected
  for name in expected:
    path = os.path.join(run_dir, "inspect", name)
    with open(path, "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n", name
    assert 1_000 < os.path.getsize(path) < 200_000, name


def test_one_tile_per_first_layer_filter(report, item):
  assert item.variables["params"]["conv1"]["kernel"].shape == (5, 5, 1, 6)
  assert report["filters.png"]["tiles"] == 6
  assert [report[f"features_{n}.png"]["channels"] for n in LAYERS] == [6, 6, 16]


def test_activation_maximisation_rises_well_above_the_noise(report):
  for layer in LAYERS:
    facts = report[f"maximisation_{layer}.png"]
    start, final = facts["start"], facts["final"]
    assert len(final) == (16 if layer == "stage2" else 6)
    assert np.all(final > start + 0.2), (layer, start, final)
    assert np.median(final) > 3 * np.median(start) + 0.5, (layer, start, final)


def test_effective_field_lies_inside_the_theoretical_one(report):
  sizes = {}
  for layer, f in report["receptive_fields.png"].items():
    top, bottom, left, right = f["box"]
    rows, cols = np.nonzero(f["gradient"])
    assert rows.size > 0, layer  # the unit depends on the input
    assert top <= rows.min() and rows.max() <= bottom, (layer, f["box"])
    assert left <= cols.min() and cols.max() <= right, (layer, f["box"])
    sizes[layer] = bottom - top + 1
  assert sizes == {"stem": 5, "stage1": 6, "stage2": 16}


def test_top_patches_are_sorted_fields(report, item):
  facts = report["top_patches_stage2.png"]
  assert facts["patch_shape"] == (16, 4, 16, 16, 1)
  assert np.all(np.diff(facts["values"], axis=1) <= 0)
  # The best image of channel 0 gives its map exactly that maximum.
  g = graph.trace(item.model, item.variables, (1, 28, 28, 1))
  raw = loading.dataset_image(item.dataset, int(facts["images"][0, 0]))[0]
  maps = visualize.feature_maps(g, item.variables, jnp.asarray(item.preprocess(raw[None])),
                                ["stage2"])["stage2"]
  np.testing.assert_allclose(maps[..., 0].max(), facts["values"][0, 0], rtol=1e-5)


def test_forward_reads_through_flax_and_grad_cam_is_a_map(item):
  g = graph.trace(item.model, item.variables, (2, 28, 28, 1))
  x = jax.random.normal(jax.random.key(3), (2, 28, 28, 1))
  logits, taps = graph.forward(g, item.variables, x, ("stage2", "pool1", "conv1"))
  want, state = item.model.apply(item.variables, x, mutable=["intermediates"])
  np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(taps["stage2"], state["intermediates"]["stage2"][0], rtol=1e-6)
  assert taps["pool1"].shape == (2, 14, 14, 6) and taps["conv1"].shape == (2, 28, 28, 6)
  g1 = graph.trace(item.model, item.variables, (1, 28, 28, 1))
  cam = visualize.grad_cam(g1, item.variables, x[:1], "stage2", 3)
  assert cam.shape == (28, 28) and cam.min() >= 0 and np.isclose(cam.max(), 1.0)
  with pytest.raises(UserError, match="unknown layer 'stage9'"):
    visualize.feature_maps(g1, item.variables, x[:1], ["stage9"])


def test_maximisation_is_deterministic_by_seed(item):
  g = graph.trace(item.model, item.variables, (2, 28, 28, 1))
  lo, hi = visualize.valid_range(item.preprocess, (28, 28, 1))
  run = lambda seed: visualize.maximise(g, item.variables, "stage2", [0, 1], lo, hi, seed=seed,
                                        steps=4).images
  a, b, c = run(0), run(0), run(1)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
