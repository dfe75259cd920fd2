"""UMT migration toolkit: the `umt-migrations` CLI and the migration engine behind it.

Nothing here imports kopf or kubernetes: the runner a Job executes stays lean.
"""

__version__ = "0.1.0"
