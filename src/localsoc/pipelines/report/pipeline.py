from kedro.pipeline import Pipeline, node

from .nodes import write_report


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                write_report,
                inputs=["data_summary", "validation_report", "rslocal_selection",
                        "rslocal_history", "site_calibration", "study_metrics", "study_winners",
                        "study_table", "transfer_depths", "library_ssl", "sites_ssl",
                        "stage_seconds", "params:study", "study_predictions",
                        "serving_manifest", "params:localise", "imported_libraries",
                        "imported_sites", "split_assignment"],
                outputs=["study_report", "study_report_html"],
                name="write_report",
            )
        ]
    )
