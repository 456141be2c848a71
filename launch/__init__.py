"""Launchers: absl flags -> config -> runtime.

Imported before any launcher module, so TensorFlow's C++ start-up log is
hidden before TensorFlow loads (see `launch.tensorflow_logging`).
"""

from launch.tensorflow_logging import quiet_unless_asked

quiet_unless_asked()
