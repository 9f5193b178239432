"""Benchmarks and the model zoo: the `bench` command, zoo models, reports."""
