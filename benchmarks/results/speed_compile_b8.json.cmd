python -m benchmarks.speed --json --batch 8 --steps 10 --repeats 3 --compile
# 49s wall
