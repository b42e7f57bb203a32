from kedro.pipeline import Pipeline, node

from .nodes import merge_reports, validate_library, validate_sites, write_data_docs


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                validate_library,
                inputs=["library_raw", "params:validate", "params:grid"],
                outputs=["library_ssl", "library_quarantine", "library_validation"],
                name="validate_library",
            ),
            node(
                validate_sites,
                inputs=["sites_raw", "params:validate", "params:grid", "params:split"],
                outputs=["sites_ssl", "sites_quarantine", "sites_validation"],
                name="validate_sites",
            ),
            node(
                merge_reports,
                inputs=["library_validation", "sites_validation"],
                outputs="validation_report",
                name="write_validation_report",
            ),
            node(
                write_data_docs,
                inputs="validation_report",
                outputs="validation_data_docs",
                name="write_data_docs",
            ),
        ]
    )
