"""``nas scale``: EfficientNet's compound scaling (arXiv 1905.11946 §3.3) as a run.

Step 1, the grid over alpha, beta, gamma, is a run of the ``compound-grid`` controller over the
points of ``nas.spaces.scaling`` (``run``); step 2, the scaled family, is computed from its
journal (``family``: scaling.json, scaling.md, scaling.png).
"""
