from kedro.pipeline import Pipeline, node

from .nodes import split_sites, summarise_data


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                split_sites,
                inputs=["sites_spectra", "site_plans", "params:split", "params:study"],
                outputs=["site_calibration", "site_test", "site_unlabelled", "split_assignment"],
                name="kennard_stone_split",
            ),
            node(
                summarise_data,
                inputs=[
                    "library_ssl",
                    "sites_ssl",
                    "split_assignment",
                    "library_quarantine",
                    "sites_quarantine",
                ],
                outputs="data_summary",
                name="summarise_data",
            ),
        ]
    )
