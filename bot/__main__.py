"""`python -m bot` runs the `tasktrail` command line."""

import sys

from bot.cli.main import main

sys.exit(main())
