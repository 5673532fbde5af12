"""Pure PyTorch and Pillow: preprocessing, the quality gate, the model, training and prediction. No Celery, no HTTP."""
