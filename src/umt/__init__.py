"""UMT (Ultimate Marketing Team) application: the database layer lives in :mod:`umt.models`."""
