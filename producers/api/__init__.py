"""The HTTP API phones talk to: upload a photo, read its diagnosis, send feedback."""
