"""Kedro pipelines, one per study stage."""
