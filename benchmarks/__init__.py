"""zoo benchmarks; see benchmarks/run.py."""
