"""Dockerfile front end and build driver: text -> typed instructions -> stage DAG -> solve."""
