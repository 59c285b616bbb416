"""`python -m bot` is the `mailfix` command."""

import sys

from bot.terminal.cli import main

sys.exit(main())
