from kedro.pipeline import Pipeline, node

from .nodes import estimate_nested


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                estimate_nested,
                inputs=["library_spectra", "site_calibration", "site_test", "rslocal_selection",
                        "site_folds", "library_models", "site_models", "transfer_models",
                        "params:localise", "params:train", "params:transfer", "params:study",
                        "params:nested"],
                outputs=["nested_estimates", "nested_choices", "nested_models"],
                name="estimate_nested",
            )
        ]
    )
