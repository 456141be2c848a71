"""Example environments of your own, for env.id 'module:attribute'."""
