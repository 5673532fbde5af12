"""Colours the dashboard's page and its charts share, so that a retraining run looks the same in the table and on
the model history chart."""

from __future__ import annotations

STATUS_COLOURS = {"promoted": "#2e7d32", "kept": "#ef6c00", "failed": "#c62828", "running": "#1565c0",
                  "queued": "#9e9e9e"}  # fmt: skip
OTHER_COLOUR = "#616161"  # a status without a colour of its own
