"""The seed papers' op libraries, registered as ``nas.ops`` entry points like any plug-in's.

``shuffle``: ShuffleNet v1/v2 units and channel shuffle (arXiv 1707.01083, 1807.11164);
``residual``: SE-ResNe(X)t bottlenecks (arXiv 1709.01507) and DPN dual-path blocks
(arXiv 1707.01629); ``condense``: CondenseNet's learned group convolution and dense layer
(arXiv 1711.09224).
"""
