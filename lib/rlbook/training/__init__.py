"""One training run and sweeps of them: the trainer, its update, checkpoints, runs and params."""
