"""The database's migrations (Alembic): `versions/` holds one file per change of the tables in schemas/tables.py,
from the baseline of the release of 2026-12-02 on. core/schema.py runs them."""
