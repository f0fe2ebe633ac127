python -m benchmarks.sweep_throughput --json
