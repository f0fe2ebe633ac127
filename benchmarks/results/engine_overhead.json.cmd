python -m benchmarks.engine_overhead --json --steps 10 --repeats 3
# 8s wall
