"""Controllers: every one works on any space through ``decisions()`` and the ask/tell protocol."""
