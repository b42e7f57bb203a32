from kedro.pipeline import Pipeline, node

from .nodes import estimate_mbl


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                estimate_mbl,
                inputs=["site_calibration", "site_test", "library_spectra",
                        "rslocal_selection", "params:mbl", "params:study"],
                outputs="mbl_estimates",
                name="estimate_mbl",
            )
        ]
    )
