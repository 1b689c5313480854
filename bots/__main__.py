"""``python -m bots`` is the ``pixbot`` command."""

import sys

from bots.cli import main

sys.exit(main())
