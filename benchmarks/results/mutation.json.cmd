python -m benchmarks.mutation --out benchmarks/results/mutation.json
