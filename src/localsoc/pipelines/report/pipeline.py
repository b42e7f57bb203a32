from kedro.pipeline import Pipeline, node

from .nodes import (
    data_section,
    localise_section,
    render_report,
    report_header,
    report_page,
    serving_sections,
    study_sections,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(report_header, inputs=["library_ssl", "sites_ssl", "params:study"],
                 outputs="report_header", name="report_header"),
            node(data_section,
                 inputs=["data_summary", "validation_report", "library_ssl", "sites_ssl",
                         "imported_libraries", "imported_sites", "split_assignment"],
                 outputs="report_data", name="report_data"),
            node(localise_section,
                 inputs=["rslocal_selection", "rslocal_history", "site_calibration",
                         "library_ssl", "params:study", "params:localise"],
                 outputs="report_localise", name="report_localise"),
            node(study_sections,
                 inputs=["study_metrics", "study_table", "study_winners", "transfer_depths",
                         "params:study"],
                 outputs="report_study", name="report_study"),
            node(serving_sections,
                 inputs=["serving_manifest", "study_predictions", "sites_ssl", "study_metrics"],
                 outputs=["report_answer", "report_serving"], name="report_serving"),
            node(render_report,
                 inputs=["report_header", "report_answer", "report_data", "report_localise",
                         "report_study", "report_serving"],
                 outputs="study_report", name="write_report"),
            node(report_page, inputs=["study_report", "localise_figures", "study_figures"],
                 outputs="study_report_html", name="report_page"),
        ]
    )
