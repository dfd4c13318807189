import torch, torchvision, nas
from nas.cost import build_on_meta
sd = build_on_meta(lambda: torchvision.models.efficientnet_b1()).state_dict()
try:
    out = nas.from_torchvision("efficientnet_b0", sd); print("b1 -> b0 accepted silently:", len(out), "of", len(sd), "tensors")
except ValueError as e: print("raised", e)
sd = build_on_meta(lambda: torchvision.models.efficientnet_b0()).state_dict()
for k in ["classifier.1.weight", "features.0.0.weight", "features.1.0.block.1.fc1.bias"]:
    d = dict(sd); del d[k]
    try: nas.from_torchvision("efficientnet_b0", d)
    except ValueError as e: print(k, "->", e)
d = dict(sd); d["features.3.1.block.0.1.running_var"] = torch.empty(7, device="meta")
try: nas.from_torchvision("efficientnet_b0", d)
except ValueError as e: print("shape ->", e)
for name in ["resnet50", "efficientnet-b9"]:
    try: nas.from_torchvision(name, sd)
    except ValueError as e: print(name, "->", str(e)[:100])
sd = build_on_meta(lambda: torchvision.models.mobilenet_v3_large()).state_dict()
d = dict(sd); del d["classifier.3.weight"]
try: nas.from_torchvision("mobilenet_v3_large", d)
except ValueError as e: print("mnv3 classifier.3.weight ->", e)
d = dict(sd); d["classifier.3.weight"] = torch.empty(1000, 1000, device="meta")
try: nas.from_torchvision("mobilenet_v3_large", d)
except ValueError as e: print("mnv3 classifier.3.weight shape ->", e)
