"""conf/paper (`make paper`): the paper's library sizes with a budget per library.

The full run takes about an hour (BENCHMARKS.md); these tests keep the environment from rotting:
its sizes are the paper's, each library's budget resolves and starts from the networks named for
it, and its first stages run on conf/paper with only the sizes and epochs made tiny.
"""

from __future__ import annotations

import ast

import pandas as pd
import pytest

from localsoc.data.simulate import COUNTRY_SIZES_PAPER, country_sizes_for
from localsoc.families.cnn import library_params
from localsoc.models.training import resolve_budget
from tests.conftest import load_params, make_scratch_project

LIBRARY_KEYS = ("global", "country_CN", "country_SE", "country_US")


def test_library_params_merge_the_country_entry_then_the_model_s_own():
    params = {"library_budget": {"trials": 4, "folds": 5}, "space": {"filters": [8]},
              "library_by_scope": {"country": {"trials": 6, "space": {"filters": [16]}},
                                   "country_CN": {"folds": 3}, "global": {"trials": 2}}}
    china = library_params(params, "library_country_CN")
    assert china["library_budget"] == {"trials": 6, "folds": 3}
    assert china["space"] == {"filters": [16]}
    sweden = library_params(params, "library_country_SE")
    assert sweden["library_budget"] == {"trials": 6, "folds": 5}
    world = library_params(params, "library_global")
    assert world["library_budget"] == {"trials": 2, "folds": 5}
    assert world["space"] == {"filters": [8]}
    assert params["library_budget"] == {"trials": 4, "folds": 5}  # not changed in place


def test_paper_environment_has_the_papers_library_sizes():
    params = load_params("paper")
    size = params["ingest"]["simulate"]["global_size"]
    assert size == 50422
    assert country_sizes_for(size) == COUNTRY_SIZES_PAPER


@pytest.mark.parametrize("key", LIBRARY_KEYS)
def test_each_paper_library_budget_resolves(key):
    train = load_params("paper")["train"]
    budget = resolve_budget(library_params(train, f"library_{key}")["library_budget"])
    assert budget["trials"] >= len(budget["initial_trials"])
    assert budget["initial_trials"][0] == "compact"
    if key != "global":
        own = {"CN": "paper_china", "SE": "paper_sweden", "US": "paper_usa"}[key[-2:]]
        assert own in budget["initial_trials"]


# Runtime parameters (merged over conf/paper as `kedro run --params` merges them)
TINY = {"ingest": {"simulate": {"global_size": 1500, "sites": ["china_site"]}},
        "localise": {"k": 40, "progress": False},
        "train": {"progress": False,
                  "library_budget": {"trials": 2, "max_epochs": 1, "patience": 1, "folds": 2},
                  "library_by_scope": {"global": {"max_epochs": 1}}}}


def test_paper_stages_run_at_tiny_sizes_and_china_starts_from_its_paper_network(tmp_path):
    from localsoc.command_line import run_stages

    root = make_scratch_project(tmp_path / "paper")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        run_stages(["ingest", "validate", "preprocess", "split", "localise", "train_library"],
                   "paper", params=TINY, project=root)
    trials = pd.read_csv(root / "data/07_model_output/library_search_trials.csv")
    assert set(trials["model"]) == {"global", "country_CN"}
    china = trials.loc[trials["model"] == "country_CN"].sort_values("trial_id")
    values = [ast.literal_eval(v) for v in china["hyperparameters"]]
    assert values[0]["conv_0_filters"] == 16  # compact
    assert (values[1]["conv_blocks"], values[1]["conv_1_filters"]) == (3, 248)  # paper_china
    assert (china["status"] == "COMPLETED").all()
