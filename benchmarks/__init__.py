"""Benchmarks: scripts that append JSON records to ``results/`` and regenerate RESULTS.md."""
# First, before any benchmark imports detectron2: library deprecation notices nobody can act on.
import bikestate  # noqa: F401
