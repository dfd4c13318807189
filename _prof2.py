import time, torch, torchvision, nas, sys
sys.path.insert(0, "tests")
from test_torchvision_parity import randomise, image
r = torchvision.models.get_model("efficientnet_b0", weights=None, num_classes=10).eval()
x=image()
def tm(tag):
    with torch.inference_mode():
        r(x); T=time.perf_counter(); r(x); print(tag, round(time.perf_counter()-T,3))
tm("plain init")
randomise(r); tm("randomised")
torch.set_flush_denormal(True); tm("randomised flush denormal")
torch.set_flush_denormal(False)
# find denormals in activations
tiny = {}
def hook(name):
    def f(mod, inp, out):
        o = out.abs(); tiny[name] = ((o > 0) & (o < 1.2e-38)).float().mean().item()
    return f
for n, m in r.named_modules():
    if len(list(m.children())) == 0: m.register_forward_hook(hook(n))
with torch.inference_mode(): r(x)
print(sorted(tiny.items(), key=lambda kv: -kv[1])[:8])
