"""Shared test settings.

One intra-op thread: the tests use tiny tensors, where OpenMP's thread barriers cost more than
they save, and on a loaded 2-core machine two spinning threads can slow a step down 100-fold.
"""

import torch

torch.set_num_threads(1)
