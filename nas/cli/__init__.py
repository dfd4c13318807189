"""The ``nas`` command: one module per command, ``main`` dispatching to them.

A user mistake prints one line on stderr and exits with code 2 (``main``). Each command module
parses and validates its arguments without importing torch, so a mistake is refused in well
under two seconds; the work itself is imported when it starts. A Ctrl-C while the commands load
(before ``main`` can catch it) ends as ``main`` ends one: a line and exit code 130, no traceback.
"""

import sys

try:
    from nas.cli.app import EXIT_USAGE, UsageError, build_parser, main
except KeyboardInterrupt:  # the console script imports this module before it calls main
    print("nas: interrupted", file=sys.stderr)
    raise SystemExit(130) from None

__all__ = ["EXIT_USAGE", "UsageError", "build_parser", "main"]
