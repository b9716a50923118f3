"""Prefect tasks: thin wrappers over cpt_core stages adding retries, progress artifacts, logs and reports."""
