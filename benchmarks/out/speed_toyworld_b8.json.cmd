python benchmarks/speed.py --json --batch 8 --steps 10 --repeats 3
# 34s wall
