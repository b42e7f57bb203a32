from kedro.pipeline import Pipeline, node

from .nodes import train_library_models, train_site_models


def create_library_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                train_library_models,
                inputs=["library_spectra", "site_calibration", "rslocal_selection",
                        "params:train", "params:study", "library_models_previous"],
                outputs=["library_models", "library_search_trials"],
                name="train_library_cnns",
            )
        ]
    )


def create_sites_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                train_site_models,
                inputs=["library_spectra", "site_calibration", "rslocal_selection",
                        "params:train", "params:study"],
                outputs=["site_models", "site_search_trials", "site_folds"],
                name="train_site_models",
            )
        ]
    )


def create_pipeline(**kwargs) -> Pipeline:
    return create_library_pipeline() + create_sites_pipeline()
