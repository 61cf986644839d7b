"""``python -m gossip.cli``: the `gossip` command."""

import sys

from . import main

sys.exit(main())
