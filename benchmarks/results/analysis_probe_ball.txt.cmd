python -m clipforge probe examples/toyworld/probe_ball.json --out examples/toyworld/reports/probe_ball
# 522s wall
