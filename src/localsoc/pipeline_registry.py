"""The project's pipelines, in the order the study runs them."""

from __future__ import annotations

from kedro.pipeline import Pipeline

from localsoc.pipelines import ingest, localise, preprocess, split, validate

STAGES: tuple[str, ...] = ("ingest", "validate", "preprocess", "split", "localise")


def register_pipelines() -> dict[str, Pipeline]:
    pipelines = {
        "ingest": ingest.create_pipeline(),
        "validate": validate.create_pipeline(),
        "preprocess": preprocess.create_pipeline(),
        "split": split.create_pipeline(),
        "localise": localise.create_pipeline(),
    }
    pipelines["__default__"] = sum((pipelines[name] for name in STAGES), Pipeline([]))
    return pipelines
