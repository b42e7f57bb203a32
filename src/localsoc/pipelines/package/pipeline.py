from kedro.pipeline import Pipeline, node

from .nodes import package_winners


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                package_winners,
                inputs=["study_winners", "study_predictions", "library_models", "site_models",
                        "transfer_models", "library_ssl", "sites_ssl", "params:grid",
                        "preprocessing", "params:validate", "params:package",
                        "nested_models"],
                outputs="serving_bundle",
                name="package_winners",
            )
        ]
    )
