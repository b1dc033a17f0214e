"""metalcandle's benchmark suite: graph build, evaluation, fused ops, memory, import time.

Run from the repository root::

    python -m benchmarks [--quick] [--peers numpy,mlx,torch,tinygrad,jax]
                         [--out results.json] [--plot results.png] [--only build,eval,...]

One module per case family (build, evaluate, fused, memory, imports, metal_counts), the timing
core in harness.py, the library adapters in peers.py, the output in report.py. See README.md.
"""
