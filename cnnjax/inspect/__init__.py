"""Looking inside a CNN: per-layer tables, receptive fields, the course's worked examples, pictures.

One job per module, data flowing top to bottom:
  intervals.py   interval rules per jaxpr primitive (which input pixels each index can see)
  receptive.py   the walk over a traced model: receptive fields, structural ops, MACs
  graph.py       trace a model once, every output named; read or perturb them through flax
  summary.py     per-layer tables and totals (``summarize``), rendered as table, JSON or CSV
  course.py      the course's worked examples (6600 vs 0, 28x28x1, leaky ReLU, 2x2 max pool)
  loading.py     what ``visualize`` reads: training runs, pretrained-weights directories
  visualize.py   pure, jit-compiled, seeded computations (filters, fields, maximisation, ...)
  pictures.py    drawing them as PNGs; ``write_all`` is the whole ``visualize`` command
  __main__.py    ``python -m cnnjax.inspect summarize|visualize|course`` (absl flags)
"""
