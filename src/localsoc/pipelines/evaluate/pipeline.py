from kedro.pipeline import Pipeline, node

from .dvc_outputs import headline_metrics, served_test_predictions
from .nodes import (
    choose_winners,
    predict_sites,
    score_sites,
    site_spectra,
    study_figures,
    study_metrics_json,
    study_table_markdown,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                site_spectra,
                inputs=["site_calibration", "site_test", "library_spectra", "rslocal_selection"],
                outputs="evaluation_sites",
                name="site_spectra",
            ),
            node(
                predict_sites,
                inputs=["evaluation_sites", "library_models", "site_models", "transfer_models",
                        "mbl_estimates", "nested_models"],
                outputs="study_estimates",
                name="predict_sites",
            ),
            node(
                score_sites,
                inputs=["study_estimates", "site_calibration", "site_test", "library_spectra",
                        "rslocal_selection", "params:evaluate", "site_folds"],
                outputs=["study_predictions", "study_scores", "study_domains"],
                name="score_sites",
            ),
            node(
                choose_winners,
                inputs=["study_scores", "study_domains", "site_calibration",
                        "study_predictions", "site_folds"],
                outputs=["study_metrics", "study_winners"],
                name="choose_winners",
            ),
            node(study_table_markdown, inputs="study_metrics", outputs="study_table",
                 name="study_table"),
            node(headline_metrics, inputs="study_winners", outputs="study_metrics_summary",
                 name="study_metrics_summary"),
            node(study_metrics_json, inputs=["study_metrics", "study_winners"],
                 outputs="study_method_metrics", name="study_method_metrics"),
            node(served_test_predictions, inputs=["study_predictions", "study_winners"],
                 outputs="served_test_predictions", name="served_test_predictions"),
            node(study_figures, inputs=["study_metrics", "study_predictions", "study_winners"],
                 outputs="study_figures", name="study_figures"),
        ]
    )
