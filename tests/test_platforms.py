"""What each platform runs by default: bfloat16 and several steps per call for small images on
accelerators; on CPU float32 and one step per call, so CPU runs are as they were."""

import pytest

from cnnjax import platforms


@pytest.mark.parametrize("platform,expected", [("cpu", "float32"), ("gpu", "bfloat16"),
                                               ("tpu", "bfloat16")])
def test_compute_dtype_follows_the_platform_unless_set(platform, expected):
  assert platforms.compute_dtype(platform) == expected
  assert platforms.compute_dtype(platform, "float32") == "float32"
  assert platforms.compute_dtype(platform, "bfloat16") == "bfloat16"


@pytest.mark.parametrize("platform,size,expected", [
    ("cpu", 28, 1), ("cpu", 224, 1),
    ("gpu", 28, 8), ("gpu", 32, 8), ("gpu", 64, 8), ("gpu", 65, 1), ("gpu", 224, 1),
    ("tpu", 32, 8), ("tpu", 299, 1),
])
def test_steps_per_call_is_several_only_for_small_images_on_accelerators(platform, size,
                                                                         expected):
  assert platforms.steps_per_call(platform, size) == expected
  assert platforms.steps_per_call(platform, size, 3) == 3  # the config's own value wins
