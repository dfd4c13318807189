"""Spaces derived from another space through a capability it declares (``nas.space``).

``scaling.CompoundScalingSpace``: the (alpha, beta, gamma) points of compound scaling over a base
network of a ``Scalable`` space (``nas scale``); ``widths.WidthSpace``: the channel widths of one
network of a ``Prunable`` space (``nas netadapt``). They are built from a base and settings, so
they are not registered: the run that uses one records how to build it again.
"""
