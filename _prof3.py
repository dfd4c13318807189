import time, torch, torchvision, sys
sys.path.insert(0, "tests")
from test_torchvision_parity import randomise, image
r = torchvision.models.get_model("efficientnet_b0", weights=None, num_classes=10).eval()
x=image()
for th in (2,1,2,1):
    torch.set_num_threads(th)
    with torch.inference_mode():
        r(x); T=time.perf_counter(); r(x); r(x); print(th, "threads plain", round((time.perf_counter()-T)/2,3))
randomise(r)
for th in (2,1):
    torch.set_num_threads(th)
    with torch.inference_mode():
        r(x); T=time.perf_counter(); r(x); r(x); print(th, "threads randomised", round((time.perf_counter()-T)/2,3))
