from kedro.pipeline import Pipeline, node

from .nodes import estimate_nested, nested_settings, nested_sites


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                nested_settings,
                inputs=["params:localise", "params:train", "params:transfer", "params:study",
                        "params:nested"],
                outputs="nested_settings",
                name="nested_settings",
            ),
            node(
                nested_sites,
                inputs=["site_calibration", "site_test", "site_folds"],
                outputs="nested_sites",
                name="nested_sites",
            ),
            node(
                estimate_nested,
                inputs=["library_spectra", "rslocal_selection", "nested_sites", "library_models",
                        "site_models", "transfer_models", "nested_settings"],
                outputs=["nested_estimates", "nested_choices", "nested_models"],
                name="estimate_nested",
            ),
        ]
    )
