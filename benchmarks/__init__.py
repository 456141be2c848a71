"""Benchmarks: scripts that measure, not tests that check."""

from launch.tensorflow_logging import quiet_unless_asked

# The launchers' rule for TensorFlow's C++ log, for the benchmark scripts.
quiet_unless_asked()
