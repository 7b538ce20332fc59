"""Experiment files in and out: from files to an Experiment and findings, and the
converters between LLaMA-Factory / LLaMA Board configs and experiments."""
