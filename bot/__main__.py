"""`python -m bot` is the `mailfix` command."""

import sys

from bot.cli import main

sys.exit(main())
