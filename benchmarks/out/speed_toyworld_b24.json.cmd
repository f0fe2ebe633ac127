python benchmarks/speed.py --json --batch 24 --steps 10 --repeats 3
# 82s wall
