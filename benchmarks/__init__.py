"""clipforge's measurements, one module each, run from the repository root as
``python -m benchmarks.NAME`` (``speed``, ``engine_overhead``, ``compare_parameterizations``,
``toyworld_eval``, ``mutation``); figures and the commands behind them are in ``RESULTS.md``."""
