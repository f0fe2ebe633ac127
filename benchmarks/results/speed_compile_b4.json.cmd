python -m benchmarks.speed --json --batch 4 --steps 10 --repeats 3 --compile
# 29s wall
