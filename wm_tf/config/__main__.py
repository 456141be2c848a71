"""`python -m wm_tf.config`: the markdown table of docs/configuration.md."""

from wm_tf.config.reference import reference_markdown

print(reference_markdown())
