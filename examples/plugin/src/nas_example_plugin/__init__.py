"""An example third-party plug-in for the NAS engine: one space, one op, one controller.

Nothing here is imported by the engine directly; it finds the three through the entry points in
this package's ``pyproject.toml`` (groups ``nas.spaces``, ``nas.ops``, ``nas.controllers``).
"""

__version__ = "0.1.0"
