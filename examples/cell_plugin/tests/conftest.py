"""One intra-op thread: the networks are tiny, and two threads make tiny tensors slower on a loaded machine."""

import torch

torch.set_num_threads(1)
