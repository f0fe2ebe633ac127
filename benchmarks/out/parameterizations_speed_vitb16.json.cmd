python benchmarks/compare_parameterizations.py --speed-only --json
# 67s wall
