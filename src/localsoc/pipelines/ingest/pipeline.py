from kedro.pipeline import Pipeline, node

from .nodes import ingest_tables


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                ingest_tables,
                inputs=["params:ingest", "params:grid", "params:study", "imported_libraries",
                        "imported_sites"],
                outputs=["library_raw", "sites_raw"],
                name="ingest_tables",
            ),
        ]
    )
