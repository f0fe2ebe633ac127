python -m clipforge probe examples/toyworld/probe_ball.json --out benchmarks/analyses/probe_ball
# 332s wall
