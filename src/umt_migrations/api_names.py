"""The names of the SchemaMigration API, in one place (no imports: every layer may use it).

The runner's waiter (``umt-migrations apply``) and the operator both address the resource by
these names; ``crds/schemamigrations.migrations.umt.dev.yaml`` defines them, and
``tests/unit/test_api_names.py`` checks that the two agree.
"""

from __future__ import annotations

GROUP = "migrations.umt.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "SchemaMigration"
PLURAL = "schemamigrations"
SINGULAR = "schemamigration"
SHORT_NAME = "smig"
