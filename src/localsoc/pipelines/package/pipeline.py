from kedro.pipeline import Pipeline, node

from .nodes import bundle_common, bundle_winners


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                bundle_common,
                inputs=["library_ssl", "sites_ssl", "params:grid", "preprocessing",
                        "params:validate", "params:package"],
                outputs="bundle_common",
                name="bundle_common",
            ),
            node(
                bundle_winners,
                inputs=["study_winners", "study_predictions", "library_models", "site_models",
                        "transfer_models", "nested_models", "bundle_common"],
                outputs="serving_bundle",
                name="package_winners",
            ),
        ]
    )
