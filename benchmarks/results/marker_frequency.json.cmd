python -m benchmarks.marker_frequency --json examples/toyworld/reports/screen
