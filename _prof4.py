import time, torch, torchvision
from torch.profiler import profile
r = torchvision.models.get_model("efficientnet_b0", weights=None, num_classes=10).eval()
x=torch.randn(2,3,64,64)
torch.set_num_threads(2)
with torch.inference_mode():
    r(x)
    with profile() as p: r(x)
print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))
