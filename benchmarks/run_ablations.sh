#!/usr/bin/env bash
# Why do the small offline CLIPs' inversions not show their prompts? Ablations on 12 random prompts,
# 150 steps (docs/research/offline-world.md, "Ablations"). Trains the variant models into /tmp/clipforge-ablations
# first unless they are there (about 25 minutes), then evaluates (about 10 minutes). Outputs go to
# benchmarks/results/ablation_*.json (and ablations_summary.txt).
#     bash benchmarks/run_ablations.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
models=/tmp/clipforge-ablations
out=benchmarks/results
mkdir -p "$models" "$out"
vit=clipforge/toyworld/models/toyworld-vit
judge=clipforge/toyworld/models/toyworld-judge
train() {  # train NAME ARGS...: a variant model, unless already trained
    [ -f "$models/$1/train_info.json" ] || python -m clipforge.toyworld.train "${@:2}" --out "$models/$1" >&2
}
train adv8-scratch --arch vit --train-size 8000 --steps 500 --adv-eps 0.031
train adv4-scratch --arch vit --train-size 32000 --steps 900 --adv-eps 0.016
train adv4-finetune --arch vit --steps 300 --lr 3e-4 --adv-eps 0.016 --init-from "$vit"
train noise-finetune --arch vit --steps 300 --lr 3e-4 --noise-std 0.3 --init-from "$vit"
train noise-judge --arch rn --seed 2 --steps 300 --lr 3e-4 --noise-std 0.3 --init-from "$judge"

eval() {  # eval NAME ARGS...: toyworld_eval on 12 prompts x 150 steps (unless ARGS say otherwise)
    echo "== ablation_$1: ${*:2}" >&2
    python -m benchmarks.toyworld_eval --json --prompts 12 --steps 150 --models toyworld-vit --judge toyworld-judge "${@:2}" > "$out/ablation_$1.json"
}
eval models --models "toyworld-vit,local-dir:$models/adv8-scratch,local-dir:$models/adv4-scratch,local-dir:$models/adv4-finetune,local-dir:$models/noise-finetune"
eval tv0.02 --set "regularizers[0].options.weight=0.02"
eval tv0.08 --set "regularizers[0].options.weight=0.08"
eval multires --set parameterization.name=multires --set optimizer.lr=0.05
eval steps340 --steps 340
eval multires-steps340 --steps 340 --set parameterization.name=multires --set optimizer.lr=0.05
eval noise-judge --judge "local-dir:$models/noise-judge"
eval noise-judge-multires --judge "local-dir:$models/noise-judge" --set parameterization.name=multires --set optimizer.lr=0.05
# inverting an ensemble: the three ViTs of the data-scale series together (the loss averaged over them)
ensemble='backbones=[{"name":"open_clip","options":{"model":"toyworld-vit"}},{"name":"open_clip","options":{"model":"toyworld-vit-8k"}},{"name":"open_clip","options":{"model":"toyworld-vit-3k"}}]'
eval ensemble --set "$ensemble"
eval ensemble-multires --set "$ensemble" --set parameterization.name=multires --set optimizer.lr=0.05
for f in "$out"/ablation_*.json; do
    python - "$f" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
for r in report["results"]:
    a = r["attribute_accuracy"]
    print(f"{sys.argv[1].split('/')[-1]:32} {r['model'][-28:]:>28} transfer {r['transfer_accuracy']:.3f} "
          f"margin {r['judge_margin']:+.3f} colour {a['colour']:.2f} shape {a['shape']:.2f} "
          f"background {a['background']:.2f} overrides {report['overrides']} judge {report['judge'][-20:]}")
PY
done | tee "$out/ablations_summary.txt"
