python -m benchmarks.compare_parameterizations --speed-only --json
# 67s wall
