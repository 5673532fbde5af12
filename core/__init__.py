"""Shared infrastructure: settings, database, blob store, errors, storage functions, the CLI and the local stack."""
