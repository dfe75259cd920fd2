"""Review before it runs: the plan of a move, its lint findings, its digest, and drift.

``render`` and ``digest`` are what the runner needs to check an approved plan (Alembic only);
``plan``, ``lint`` and the rule modules load sqlglot and run squawk, and are imported only by
the ``plan``, ``lint`` and ``check --format json`` commands.
"""
