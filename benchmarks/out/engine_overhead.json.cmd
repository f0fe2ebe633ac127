python benchmarks/engine_overhead.py --json --steps 10 --repeats 3
# 8s wall
