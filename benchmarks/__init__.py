"""Benchmarks: scripts that measure, not tests that check."""
