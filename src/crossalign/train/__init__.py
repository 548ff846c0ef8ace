"""Trainer, task objects, schedules and hyperparameter search."""
