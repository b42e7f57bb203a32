from kedro.pipeline import Pipeline, node

from .nodes import transfer_site_models


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                transfer_site_models,
                inputs=["library_models", "library_spectra", "site_calibration",
                        "rslocal_selection", "site_folds", "params:transfer",
                        "params:study"],
                outputs=["transfer_models", "transfer_depths"],
                name="transfer_representations",
            )
        ]
    )
