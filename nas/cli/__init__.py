"""The ``nas`` command: one module per command, ``main`` dispatching to them.

A user mistake prints one line on stderr and exits with code 2 (``main``). Each command module
parses and validates its arguments without importing torch, so a mistake is refused in well
under two seconds; the work itself is imported when it starts.
"""

from nas.cli.app import EXIT_USAGE, UsageError, build_parser, main

__all__ = ["EXIT_USAGE", "UsageError", "build_parser", "main"]
