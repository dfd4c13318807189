"""Published weights onto our presets: torchvision's (``torchvision``) and timm's (``timm``).

The compiled presets create the reference libraries' layers in their order, so a state dict maps
key by key, every shape checked; nothing is downloaded.
"""
