"""Whatever puts work on the queues: the upload and feedback API, the demo client, load generators. No torch here."""
