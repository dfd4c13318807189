"""Execution backends beyond the built-in local one, registered in the ``nas.backends`` entry-point group."""
