python -m benchmarks.mutation --module clipforge/registry.py --out benchmarks/out/mutation_registry.json
