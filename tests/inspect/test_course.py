"""The course's worked examples, with the course's numbers."""

import numpy as np

from cnnjax.inspect import course


def test_curve_detector_fires_on_the_curve_only():
  f = course.curve_detector_filter()
  assert f.shape == (7, 7) and np.count_nonzero(f) == 6
  # (50*30) + (50*30) + (50*30) + (20*30) + (50*30) = 6600: "a large number!"
  assert course.filter_response(f, course.CURVE_FIELD) == 6600
  assert course.filter_response(f, course.OTHER_FIELD) == 0
  assert course.filter_response(f, course.CURVE_FIELD) == np.sum(f * np.array(course.CURVE_FIELD))


def test_conv_arithmetic():
  assert course.conv_output_size(32, 5) == 28
  assert course.conv_output_shape((32, 32, 3), kernel=5, filters=1) == (28, 28, 1)
  assert course.conv_output_shape((32, 32, 3), kernel=5, filters=2) == (28, 28, 2)
  assert course.conv_output_shape((32, 32, 3), kernel=5, filters=1, padding=2) == (32, 32, 1)
  assert course.conv_output_size(224, 11, stride=4, padding=2) == 55  # AlexNet's conv1


def test_leaky_relu_keeps_a_small_slope_for_negative_inputs():
  relu, leaky = course.relu_vs_leaky((-3.0, -1.0, 0.0, 2.0))
  np.testing.assert_array_equal(relu, [0.0, 0.0, 0.0, 2.0])
  np.testing.assert_allclose(leaky, [-0.03, -0.01, 0.0, 2.0], rtol=1e-6)


def test_max_pool_2x2():
  np.testing.assert_array_equal(course.max_pool_2x2(), [[6, 8], [3, 4]])


def test_report_prints_every_example():
  text = course.report()
  for expected in ("6600", "elsewhere:    0\n", "28x28x1", "28x28x2", "-0.01", "[[6, 8], [3, 4]]"):
    assert expected in text, expected
