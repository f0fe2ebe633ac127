"""The learned judge's zero-shot accuracy on fresh images of the default's world and of the third design's."""
import json, torch
torch.set_num_threads(1)
from clipforge.toyworld.models import load_model_dir, model_dir
from clipforge.toyworld.train.evaluate import zero_shot_report
from clipforge.toyworld.train.recipes import FRAMED_WORLD, ROBUST_WORLD
from clipforge.toyworld.world import World, WorldConfig
model, tok = load_model_dir(model_dir("toyworld-judge-rn"))
out = {}
for name, world in (("default's world (ROBUST_WORLD)", ROBUST_WORLD), ("third design's (FRAMED_WORLD)", FRAMED_WORLD)):
    out[name] = zero_shot_report(model, tok, World(WorldConfig(**world)), 2000, 10002)
print(json.dumps(out, indent=1))
