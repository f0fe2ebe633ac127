python benchmarks/mutation.py --module clipforge/registry.py --out benchmarks/out/mutation_registry.json
