"""An example third-party cell search space for the NAS engine (``cell3``).

Nothing here is imported by the engine directly; it finds the space through the ``nas.spaces``
entry point in this package's ``pyproject.toml``.
"""

__version__ = "0.1.0"
