from kedro.pipeline import Pipeline, node

from .nodes import fit_library_pca, fit_preprocessing, preprocess_table, project_on_pca


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                fit_preprocessing,
                inputs=["library_ssl", "params:preprocess"],
                outputs="preprocessing",
                name="fit_preprocessing",
            ),
            node(
                preprocess_table,
                inputs=["library_ssl", "preprocessing"],
                outputs="library_spectra",
                name="preprocess_library",
            ),
            node(
                preprocess_table,
                inputs=["sites_ssl", "preprocessing"],
                outputs="sites_spectra",
                name="preprocess_sites",
            ),
            node(
                fit_library_pca,
                inputs=["library_spectra", "params:preprocess", "params:study"],
                outputs="library_pca",
                name="fit_library_pca",
            ),
            node(
                project_on_pca,
                inputs=["library_pca", "library_spectra", "sites_spectra"],
                outputs="pca_scores",
                name="project_on_pca",
            ),
        ]
    )
