"""wm_tf: world-model reinforcement learning in TensorFlow 2 / Keras 3 / TFP."""

from setuptools import find_packages, setup

setup(
    name='wm_tf',
    version='0.1.0',
    description='Dreamer-family world-model RL for TensorFlow 2, Keras 3 and '
                'TensorFlow Probability.',
    long_description=open('README.md').read() if __import__('os').path.exists(
        'README.md') else '',
    long_description_content_type='text/markdown',
    python_requires='>=3.10',
    packages=find_packages(include=['wm_tf', 'wm_tf.*', 'launch']),
    package_data={'wm_tf.config': ['presets.yaml']},
    install_requires=[
        'tensorflow==2.21.*',
        # Layers and optimizers are Keras 3; TFP only imports with tf-keras.
        'keras>=3.12,<4',
        'tf-keras==2.21.*',
        'tensorflow-probability==0.25.*',
        'tensorboard==2.21.*',  # TF 2.21 no longer installs it
        'gymnasium>=1.0,<2',
        'absl-py>=2.0',
        'PyYAML>=6.0',
        'numpy>=1.26',
        'tqdm>=4.60',
        'matplotlib>=3.7',
    ],
    extras_require={
        # The tests render CartPole episodes to GIF, so they need 'video' too,
        # they run the ONNX export, so 'onnx' too, and every env family, so
        # 'atari' and 'dmc' too.
        'test': ['pytest>=8', 'pytest-xdist>=3', 'imageio>=2.30', 'pygame>=2.1',
                 'tf2onnx==1.17.*', 'onnx>=1.17,<2', 'onnxruntime>=1.20,<2',
                 'ale-py==0.12.*', 'dm_control==1.0.*', 'mujoco>=3,<4'],
        # env.id atari:<Game>; ale-py 0.12 ships the ROMs.
        'atari': ['ale-py==0.12.*'],
        # env.id dmc:<domain>_<task>. dm_control 1.0.x breaks with mujoco 4
        # (it reads MjModel fields that mujoco 4 removed). Pixel renders on
        # CPU need an OpenGL: Debian's libosmesa6 (MUJOCO_GL=osmesa).
        'dmc': ['dm_control==1.0.*', 'mujoco>=3,<4'],
        # launch.export --formats=onnx (tf2onnx converts, onnx and
        # onnxruntime check the file).
        'onnx': ['tf2onnx==1.17.*', 'onnx>=1.17,<2', 'onnxruntime>=1.20,<2'],
        'video': ['imageio>=2.30', 'pygame>=2.1'],  # pygame draws CartPole
        'profile': ['tensorboard-plugin-profile'],
    },
)
