"""The preprocess pipeline with a chain written as in the parameters file (YAML), through a Kedro
runner: the fitted chain is saved as the catalog's JSON and reads back as the same chain."""

from __future__ import annotations

import numpy as np
import yaml

from localsoc.data.schema import Grid, spectra_of
from localsoc.data.simulate import default_sites, simulate_ssl
from localsoc.spectra.steps import apply_steps

PARAMETERS = """
preprocess:
  steps: [{absorbance: {}}, {msc: {}}, {savgol: {window: 7, polyorder: 2, deriv: 1}}, detrend]
  pca:
    n_components: 3
"""


def test_the_preprocess_pipeline_saves_the_fitted_chain_as_json(tmp_path):
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.runner import SequentialRunner

    from localsoc.datasets.atomic import JSONDataset, ParquetDataset
    from localsoc.pipelines.preprocess import create_pipeline

    library, sites = simulate_ssl(global_size=110, seed=5, grid=Grid(400, 2500, 50),
                                  sites=default_sites()[:1], country_sizes={})
    params = yaml.safe_load(PARAMETERS)["preprocess"]
    catalog = DataCatalog({
        "library_ssl": MemoryDataset(library), "sites_ssl": MemoryDataset(sites),
        "params:preprocess": MemoryDataset(params), "params:study": MemoryDataset({"seed": 1}),
        "preprocessing": JSONDataset(filepath=str(tmp_path / "preprocessing.json")),
        "sites_spectra": ParquetDataset(filepath=str(tmp_path / "sites_spectra.parquet")),
    })
    SequentialRunner().run(create_pipeline(), catalog)
    stored = catalog.load("preprocessing")
    assert [step["name"] for step in stored["steps"]] == ["absorbance", "msc", "savgol",
                                                          "detrend"]
    assert stored["steps"][3]["params"] == {"order": 2}
    np.testing.assert_array_equal(spectra_of(catalog.load("sites_spectra")),
                                  apply_steps(spectra_of(sites), stored["steps"]))
