"""Benchmark suite for After (not part of the runtime package).

A package so that ``bench.stats`` can be imported by the runners on both
sides (After's and the peers'); the peer side's extras are listed in
``bench/requirements.txt`` and are never runtime dependencies.
"""
