python -m benchmarks.mutation --module clipforge/registry.py --out benchmarks/results/mutation_registry.json
