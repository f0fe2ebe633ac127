python -m clipforge probe examples/toyworld/probe_ball.json --out benchmarks/analyses/probe_ball
# 345s wall
