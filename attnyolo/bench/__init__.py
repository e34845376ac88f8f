"""Benchmarks run by hand, not by the test suite: ``python -m attnyolo.bench <command>``.

Commands: ``modules`` (:mod:`attnyolo.bench.modules`): every zoo module's forward+backward time and memory
against its reference implementation and the memory-bound floor.
"""
