from kedro.pipeline import Pipeline, node

from .nodes import localise_figures, select_library_samples


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                select_library_samples,
                inputs=["library_spectra", "site_calibration", "params:localise",
                        "params:study"],
                outputs=["rslocal_selection", "rslocal_history"],
                name="rslocal_select",
            ),
            node(
                localise_figures,
                inputs=[
                    "library_spectra",
                    "site_calibration",
                    "rslocal_selection",
                    "pca_scores",
                    "library_pca",
                    "params:localise",
                    "params:study",
                ],
                outputs="localise_figures",
                name="localise_figures",
            ),
        ]
    )
