"""Contracts every side of mhogo agrees on: labels, queue and task names, task payloads, API bodies and tables.

Nothing here imports Celery, FastAPI or torch, so producers, workers and the ML code can all depend on it.
"""
