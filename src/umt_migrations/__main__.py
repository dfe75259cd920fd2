"""``python -m umt_migrations``: the same CLI as ``umt-migrations``."""

import sys

from .cli import main

sys.exit(main())
