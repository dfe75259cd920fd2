#!/usr/bin/env python3
"""UMT's migration CLI under the name the team already uses: ``python manage_migrations.py …``.

Identical to the ``umt-migrations`` console script. Works from a fresh clone without
installing the package (``src/`` is put on the path), as long as the dependencies are present.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from umt_migrations.cli import main

if __name__ == "__main__":
    sys.exit(main())
