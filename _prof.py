import time, torch, torchvision, nas, copy, sys
sys.path.insert(0, "tests")
from test_torchvision_parity import randomise, image
for ours, tv in [("efficientnet-b0","efficientnet_b0"),("mobilenetv3-small","mobilenet_v3_small"),("efficientnet-b5","efficientnet_b5")]:
    T=time.perf_counter(); t=lambda: round(time.perf_counter()-T,2)
    r = torchvision.models.get_model(tv, weights=None, num_classes=10); print(ours, "tv build", t())
    randomise(r); print("randomise", t())
    m = nas.materialize(ours, num_classes=10, seed=1); print("ours build", t())
    sd = nas.from_torchvision(tv, r.state_dict()); print("map", t())
    m.load_state_dict(sd); print("load", t())
    r2=copy.deepcopy(r); m2=copy.deepcopy(m); print("deepcopy", t())
    r.eval(); m.eval(); x=image()
    with torch.inference_mode(): r(x); print("fwd1", t()); m(x); print("fwd2", t()); r(x); print("fwd3", t())
    m.train(); y=m(x); print("train fwd", t()); y.sum().backward(); print("bwd", t())
