python benchmarks/speed.py --json --batch 8 --steps 10 --repeats 3 --compile
# run by hand with the same command (wall time not recorded)
