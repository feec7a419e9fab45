"""Benchmarks: speed and memory figures, written to docs/benchmarks.md (never timed tests)."""
