python benchmarks/mutation.py --out benchmarks/out/mutation.json
