"""The project's pipelines, in the order the study runs them."""

from __future__ import annotations

from kedro.pipeline import Pipeline

from localsoc.pipelines import (
    evaluate,
    ingest,
    localise,
    mbl,
    nested,
    package,
    preprocess,
    report,
    split,
    train,
    transfer,
    validate,
)

STAGES: tuple[str, ...] = (
    "ingest",
    "validate",
    "preprocess",
    "split",
    "localise",
    "train_library",
    "train_sites",
    "transfer",
    "nested",
    "mbl",
    "evaluate",
    "package",
    "report",
)


def register_pipelines() -> dict[str, Pipeline]:
    pipelines = {
        "ingest": ingest.create_pipeline(),
        "validate": validate.create_pipeline(),
        "preprocess": preprocess.create_pipeline(),
        "split": split.create_pipeline(),
        "localise": localise.create_pipeline(),
        "train_library": train.create_library_pipeline(),
        "train_sites": train.create_sites_pipeline(),
        "transfer": transfer.create_pipeline(),
        "nested": nested.create_pipeline(),
        "mbl": mbl.create_pipeline(),
        "evaluate": evaluate.create_pipeline(),
        "report": report.create_pipeline(),
        "package": package.create_pipeline(),
    }
    pipelines["train"] = pipelines["train_library"] + pipelines["train_sites"]
    pipelines["__default__"] = sum((pipelines[name] for name in STAGES), Pipeline([]))
    return pipelines
