import time, torch, torchvision, nas
from torch import nn
def randomize(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                var = 10 ** (torch.rand(m.running_var.shape, generator=g) * 2 - 2)
                m.running_var.copy_(var)
                m.weight.copy_((torch.rand(m.weight.shape, generator=g) + 0.5) * var.sqrt())
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.2)
                m.num_batches_tracked.fill_(int(torch.randint(1, 1000, (1,), generator=g)))
            elif isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
for tv, ours, nc in [("efficientnet_b0","efficientnet-b0",1000),("efficientnet_b5","efficientnet-b5",10),("mobilenet_v3_large","mobilenetv3-large",1000),("mobilenet_v3_small","mobilenetv3-small",10)]:
    t=time.time()
    torch.manual_seed(0)
    ref = torchvision.models.get_model(tv, weights=None, num_classes=nc); randomize(ref)
    m = nas.materialize(ours, num_classes=nc)
    m.load_state_dict(nas.from_torchvision(tv, ref.state_dict()))
    ref.eval(); m.eval()
    x = torch.randn(2,3,64,64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a=ref(x); b=m(x)
    d=(a-b).abs().max().item()
    # train mode
    ref.train(); m.train()
    torch.manual_seed(5); ta=ref(x); torch.manual_seed(5); tb=m(x)
    ta.square().mean().backward(); tb.square().mean().backward()
    gd = max((p.grad-q.grad).abs().max().item() for p,q in zip(ref.parameters(), m.parameters()))
    sd = max((p-q).abs().max().item() for p,q in zip(ref.state_dict().values(), m.state_dict().values()) if p.is_floating_point())
    torch.manual_seed(6); tc=m(x)
    for bn in m.modules():
        if isinstance(bn, nn.BatchNorm2d): bn.eps = 1e-3 if bn.eps==1e-5 else 1e-5
    m.eval()
    with torch.no_grad(): c=m(x)
    print(tv, "%.2fs"%(time.time()-t), "maxabs out", a.abs().max().item(), "diff", d, "eps-swapped diff", (b-c).abs().max().item(), "train diff", (ta-tb).abs().max().item(), "other seed", (ta-tc).abs().max().item(), "grad", gd, "state", sd)
