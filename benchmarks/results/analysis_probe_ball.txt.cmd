python -m clipforge probe examples/toyworld/probe_ball.json --out examples/toyworld/reports/probe_ball
# 332s wall
