"""The Celery side of mhogo: one app, its configuration, and thin tasks, one module per queue."""
