"""Results files: the Markdown tables a benchmark prints, written as CSV beside its JSON.

``benchmarks.run --out=DIR/NAME.json`` also writes ``DIR/NAME.csv`` (the main table) and
``DIR/NAME_pipeline.csv`` (the input-pipeline table, when measured), overwritten each run. The
default ``--out`` is ``benchmarks/results/benchmark.json``; ``benchmarks/results/README.md`` says
which command wrote each committed file, and the tables in ``docs/performance.md`` name theirs.
"""

from __future__ import annotations

import csv
import io
import os

from cnnjax import files


def tables(lines: list[str]) -> list[list[list[str]]]:
  """The Markdown tables in printed ``lines`` (rows of cells, header first, the ``|---|`` rule
  dropped), in order."""
  found: list[list[list[str]]] = []
  current: list[list[str]] | None = None
  for line in "\n".join(lines).splitlines():
    if not line.startswith("|"):
      current = None
      continue
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if all(set(c) <= set("-: ") for c in cells):
      continue
    if current is None:
      current = []
      found.append(current)
    current.append(cells)
  return found


def write_tables(out_json: str, lines: list[str],
                 suffixes: tuple[str, ...] | list[str] = ("", "_pipeline")) -> list[str]:
  """Writes each printed table as CSV beside ``out_json`` (the first as ``NAME.csv``, the next
  as ``NAME<suffix>.csv``), atomically; returns the paths written."""
  stem = os.path.splitext(out_json)[0]
  paths = []
  for table, suffix in zip(tables(lines), suffixes):
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(table)
    files.write_atomic(stem + suffix + ".csv", text.getvalue())
    paths.append(os.path.abspath(stem + suffix + ".csv"))
  return paths
