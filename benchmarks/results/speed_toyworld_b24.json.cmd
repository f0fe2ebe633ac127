python -m benchmarks.speed --json --batch 24 --steps 10 --repeats 3
# 82s wall
