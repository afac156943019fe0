"""Benchmarks: NumPy reference vs torch CPU vs torch CUDA, timed with pytest-benchmark.

See docs/benchmarks.md. Plain ``pytest`` runs each benchmark body once, untimed
(a smoke test); ``pytest --benchmark-only`` times them.
"""
