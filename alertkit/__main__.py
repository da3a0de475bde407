"""``python -m alertkit`` runs the command line."""

import sys

from alertkit.cli import main

sys.exit(main())
