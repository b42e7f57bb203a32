"""RS-LOCAL with its subset fits dispatched to a Dask LocalCluster of two worker processes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from localsoc.pipelines.localise.nodes import select_library_samples
from localsoc.selection import RSLocal
from tests.conftest import load_params, make_ssl

distributed = pytest.importorskip("distributed")

FAST = {"k": 20, "b": 12, "retain": 0.8, "n_components": 4, "random_state": 7}


def site_like(seed=0, n_library=300, n_local=20, n_bands=40):
    """A library with two X -> y relations; the site follows the first."""
    rng = np.random.default_rng(seed)
    basis = np.cumsum(rng.normal(size=(6, n_bands)), axis=1) / 10
    latent = rng.normal(size=(n_library, 6))
    X = 1.0 + latent @ basis + 0.01 * rng.normal(size=(n_library, n_bands))
    y = np.where(np.arange(n_library) % 2 == 0, 2 + 0.8 * latent[:, 0], 4 - 0.8 * latent[:, 1])
    local = rng.normal(size=(n_local, 6))
    X_local = 1.0 + local @ basis + 0.01 * rng.normal(size=(n_local, n_bands))
    return X, y, X_local, 2 + 0.8 * local[:, 0]


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, host="127.0.0.1") as local_cluster:
        with distributed.Client(local_cluster) as client:
            client.wait_for_workers(2, timeout=60)
        yield local_cluster


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_dask_selection_is_identical_to_local(cluster, dtype):
    X, y, X_local, y_local = site_like()
    local = RSLocal(**FAST, dtype=dtype).fit(X, y, X_local, y_local)
    with distributed.Client(cluster.scheduler_address) as client, \
            distributed.get_task_stream(client) as stream:
        remote = RSLocal(**FAST, dtype=dtype, executor="dask",
                         scheduler_address=cluster.scheduler_address, chunk_size=7)
        remote.fit(X, y, X_local, y_local)
    np.testing.assert_array_equal(remote.selected_indices_, local.selected_indices_)
    np.testing.assert_array_equal(remote.scores_, local.scores_)
    np.testing.assert_array_equal(remote.best_subset_indices_, local.best_subset_indices_)
    assert pd.DataFrame(remote.history_).equals(pd.DataFrame(local.history_))
    # The subsets were scored on the cluster, by both workers, in chunks of 7.
    chunks = [task for task in stream.data if task["key"].startswith("_score_chunk")]
    expected = sum(-(-row["n_subsets"] // 7) for row in local.history_)
    assert len(chunks) == expected
    assert {task["worker"] for task in chunks} == set(cluster.scheduler_info["workers"])


def test_dask_uses_the_running_client_without_an_address(cluster):
    X, y, X_local, y_local = site_like(seed=1, n_library=120)
    local = RSLocal(**FAST).fit(X, y, X_local, y_local)
    with distributed.Client(cluster.scheduler_address):  # the default client of this process
        remote = RSLocal(**FAST, executor="dask").fit(X, y, X_local, y_local)
    np.testing.assert_array_equal(remote.selected_indices_, local.selected_indices_)


def test_dask_without_a_scheduler_says_what_to_set():
    X, y, X_local, y_local = site_like(seed=2, n_library=80)
    with pytest.raises(ValueError, match="scheduler_address"):
        RSLocal(**FAST, executor="dask").fit(X, y, X_local, y_local)
    with pytest.raises(ValueError, match="executor"):
        RSLocal(**FAST, executor="spark").fit(X, y, X_local, y_local)
    with pytest.raises(ValueError, match="chunk_size"):
        RSLocal(**FAST, executor="dask", chunk_size=0).fit(X, y, X_local, y_local)


def test_the_localise_node_passes_the_executor_through(cluster):
    library = make_ssl(160, seed=3)
    site = make_ssl(20, seed=4, site="site_a", library=None)
    study = {**load_params("base")["study"], "scopes": ["global"]}
    params = {**load_params("base")["localise"], "k": 20, "b": 10,
              "retain": 0.8, "n_components": 4, "n_jobs": 1, "progress": False}
    assert params["executor"] == "local" and params["scheduler_address"] is None
    local, _ = select_library_samples(library, site, params, study)
    with distributed.Client(cluster.scheduler_address) as client, \
            distributed.get_task_stream(client) as stream:
        remote, _ = select_library_samples(
            library, site,
            {**params, "executor": "dask", "scheduler_address": cluster.scheduler_address},
            study,
        )
    assert any(task["key"].startswith("_score_chunk") for task in stream.data)
    pd.testing.assert_frame_equal(remote, local)
