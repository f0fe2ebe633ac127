python -m benchmarks.mutation --out benchmarks/out/mutation.json
