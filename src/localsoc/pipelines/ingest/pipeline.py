from kedro.pipeline import Pipeline, node

from .nodes import simulate_tables


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                simulate_tables,
                inputs=["params:ingest.simulate", "params:grid"],
                outputs=["library_raw", "sites_raw"],
                name="simulate_ssl",
            ),
        ]
    )
