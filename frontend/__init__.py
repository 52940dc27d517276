"""The `pybuild` and `pydock` command lines: argument parsing and rendering only."""
