"""The benchmark suite: pass-through cost, broker overhead, memory, widget weight.

Run it with ``python -m bench`` (full, a few minutes) or ``python -m bench --smoke``
(seconds; proves the harness works, asserts nothing about speed). See bench/README.md.
"""
