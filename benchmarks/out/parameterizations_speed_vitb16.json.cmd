python benchmarks/compare_parameterizations.py --speed-only --json
# 81s wall
