"""Machinery: the Trainer, the Task protocol, schedules and distributed plumbing (programs live in recipes/)."""
