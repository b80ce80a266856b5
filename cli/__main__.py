"""`python -m cli`: the `homefeed` command without its installed script."""

import sys

from cli.main import main

sys.exit(main())
