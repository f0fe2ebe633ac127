python benchmarks/speed.py --json --batch 24 --steps 10
# 33s wall
