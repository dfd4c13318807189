"""Weight sharing: one bank of modules from which every candidate network is assembled.

ENAS (Pham et al., arXiv 1802.03268 §2) made search a thousand times cheaper by training one
over-parameterised network whose sub-graphs are the candidates; single-path one-shot (SPOS, Guo et
al., arXiv 1904.00420) trains it by sampling one candidate per step. Here the over-parameterised
network is a ``WeightBank``: ``nas.compile`` asks it for every part of a network by a key that says
where the part sits and what it is (``nas.compile.Make``), and it hands back the module it already
holds for that key, creating it on first use. So every space whose networks lower to the IR gets a
supernet without code of its own: an NB201 edge's op on its source state, a NASNet node's op on
the input it reads (ENAS shares exactly these), a chain network's block at its place. Parts whose
shape depends on the candidate (NASNet's preprocessing after a cell that concatenates more or
fewer states) get one module per shape.

A bank is rebuilt from its ``history`` (the IRs that created its modules, in order), so a
checkpoint holds tensors and plain data only and loads with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable
from typing import Any

from torch import nn

from nas.cell_ir import Network
from nas.compile import MODULES, init_weights


class WeightBank(nn.Module):
    """Modules by key (``parts``, in creation order), shared by every network ``assemble`` builds.

    ``seed`` seeds each new module's initial weights with its key, so a module starts the same
    whichever candidate creates it. ``new`` collects the modules created since it was last
    emptied (an optimizer adds their parameters); ``memory_format`` is applied to each new module.
    """

    def __init__(self, seed: int = 0, memory_format: Any = None) -> None:
        super().__init__()
        self.parts = nn.ModuleDict()
        self.seed, self.memory_format = seed, memory_format
        self.new: list[nn.Module] = []

    def make(self, key: Hashable, build: Callable[[], nn.Module]) -> nn.Module:
        """The bank's module for ``key``, built and initialised on first use (``nas.compile.Make``)."""
        name = part_name(key)
        if name not in self.parts:
            digest = int(hashlib.sha256(f"{self.seed}:{name}".encode()).hexdigest()[:15], 16)
            module = init_weights(build(), seed=digest)
            if self.memory_format is not None:
                module = module.to(memory_format=self.memory_format)
            self.parts[name] = module
            self.new.append(module)
        return self.parts[name]

    def assemble(self, ir: Network) -> nn.Module:
        """The network of ``ir`` made of the bank's modules (its own parameters are the bank's)."""
        build = MODULES.get(getattr(ir, "kind", None))  # type: ignore[arg-type]
        if build is None:
            raise TypeError(f"assemble() takes an IR of kind {sorted(MODULES)}, got {type(ir).__name__}")
        return build(ir, self.make)  # type: ignore[call-arg]

    def take_new(self) -> list[nn.Module]:
        """The modules created since the last call, in creation order."""
        new, self.new = self.new, []
        return new


def part_name(key: Hashable) -> str:
    """A module name for ``key``: a digest of its text (keys are made of IR specs, numbers and strings,
    whose ``repr`` is stable across processes)."""
    return "p" + hashlib.sha256(repr(key).encode()).hexdigest()[:20]
