"""Shared fixtures: a real GCS emulator server (tests/gcs_emulator.py)."""

from gcs_emulator import gcs_emulator  # noqa: F401
