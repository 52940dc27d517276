"""Runs commands in containers built from unpacked layers; knows nothing of Dockerfiles."""
