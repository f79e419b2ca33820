"""``python -m res2net`` runs the command-line tool."""

import sys

from res2net.cli import main

sys.exit(main())
