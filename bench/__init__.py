"""bench: the benchmark command, the model zoo, reports and plots."""
