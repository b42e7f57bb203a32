from kedro.pipeline import Pipeline, node

from .nodes import evaluate_sites, study_figures, study_metrics_json, study_table_markdown


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                evaluate_sites,
                inputs=["site_calibration", "site_test", "library_spectra", "rslocal_selection",
                        "library_models", "site_models", "transfer_models", "params:evaluate"],
                outputs=["study_predictions", "study_metrics", "study_winners"],
                name="evaluate_sites",
            ),
            node(study_table_markdown, inputs="study_metrics", outputs="study_table",
                 name="study_table"),
            node(study_metrics_json, inputs=["study_metrics", "study_winners"],
                 outputs="study_metrics_summary", name="study_metrics_summary"),
            node(study_figures, inputs=["study_metrics", "study_predictions", "study_winners"],
                 outputs="study_figures", name="study_figures"),
        ]
    )
