"""``python -m nas.cli``: the ``nas`` command."""

import sys

from nas.cli.app import main

sys.exit(main())
