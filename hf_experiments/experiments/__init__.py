"""Registered experiments: each module here defines one `Experiment` subclass (imported by the registry)."""
