"""Throughput benchmarks: cnnjax against PyTorch on the same architectures, synthetic data.

``python -m benchmarks.run`` prints the side-by-side table; see ``benchmarks/run.py``.
"""
