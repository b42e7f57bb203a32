"""Keras-Tuner search over K-fold CV: metrics, determinism, resume/overwrite, folds, ensemble."""

from __future__ import annotations

import json

import numpy as np
import pytest

import localsoc.models.tuner as tuner_module
from localsoc.models.ensemble import Folds, make_folds
from localsoc.models.search import search_cnn
from localsoc.models.training import resolve_budget
from tests.conftest import TINY_CNN_SPACE

SPACE = TINY_CNN_SPACE
# One random trial, then one proposed by the Gaussian process.
BUDGET = {"trials": 2, "max_epochs": 20, "patience": 8, "folds": 3, "initial_points": 1}


def simulated(n: int = 120, n_bands: int = 64, seed: int = 0):
    """Spectra from three Gaussian absorption features; y linked to two of them."""
    rng = np.random.default_rng(seed)
    grid = np.linspace(0.0, 1.0, n_bands)
    features = np.stack([np.exp(-0.5 * ((grid - c) / 0.06) ** 2) for c in (0.2, 0.5, 0.8)])
    amounts = rng.uniform(0.0, 1.0, size=(n, 3))
    X = amounts @ features + 0.01 * rng.normal(size=(n, n_bands))
    y = 1.0 + 2.0 * amounts[:, 0] - 1.0 * amounts[:, 1] + 0.05 * rng.normal(size=n)
    ids = [f"s{i:03d}" for i in range(n)]
    return X, y, ids


def mean_predictor_cv_rmse(y: np.ndarray, folds: Folds) -> float:
    return float(np.mean([
        np.sqrt(np.mean((y[valid] - y[train].mean()) ** 2)) for train, valid in folds.split()
    ]))


@pytest.fixture(scope="module")
def data():
    X, y, ids = simulated()
    return X, y, make_folds(ids, 3, seed=0)


@pytest.fixture(scope="module")
def first_search(data, tmp_path_factory):
    X, y, folds = data
    directory = tmp_path_factory.mktemp("search_a")
    return search_cnn(X, y, folds=folds, budget=BUDGET, seed=7, directory=directory,
                      space=SPACE, progress=False)


def test_search_returns_finite_metrics_that_beat_the_mean(data, first_search):
    X, y, folds = data
    trials = first_search.trials
    assert len(trials) == 2 and set(trials["status"]) == {"COMPLETED"}
    assert np.isfinite(trials["cv_rmse"]).all() and "seconds" not in trials  # no wall clock
    assert first_search.timings["trial_id"].tolist() == trials["trial_id"].tolist()
    assert (first_search.timings["seconds"] > 0).all()
    assert all(len(f) == 3 for f in trials["fold_rmse"])
    assert first_search.cv_rmse == pytest.approx(trials["cv_rmse"].min())
    assert first_search.cv_rmse < 0.5 * mean_predictor_cv_rmse(y, folds)
    oof = first_search.oof_predictions
    assert oof.shape == y.shape and np.isfinite(oof).all()
    # the OOF predictions are the fold RMSEs' source
    fold_rmse = [np.sqrt(np.mean((y[v] - oof[v]) ** 2)) for _, v in folds.split()]
    np.testing.assert_allclose(fold_rmse, first_search.ensemble.fold_rmse_, rtol=1e-6)
    assert first_search.best_hyperparameters["optimizer"] == "adam"


def test_ensemble_predicts_the_mean_of_its_folds_with_a_spread(data, first_search):
    X, y, folds = data
    ensemble = first_search.ensemble
    assert ensemble.n_folds == 3 and ensemble.folds == folds
    per_fold = ensemble.predict_folds(X[:10])
    mean, spread = ensemble.predict(X[:10], return_std=True)
    np.testing.assert_allclose(mean, per_fold.mean(axis=0))
    np.testing.assert_allclose(spread, per_fold.std(axis=0))
    assert (spread > 0).all()
    # y is standardised on each fold's training rows, not on all rows
    for k, (train, _) in enumerate(folds.split()):
        assert ensemble.y_mean_[k] == pytest.approx(y[train].mean())
        assert ensemble.y_scale_[k] == pytest.approx(y[train].std())
    with pytest.raises(ValueError, match="bands"):
        ensemble.predict(X[:, :10])


def test_same_seed_gives_the_same_trials_and_metrics(data, first_search, tmp_path):
    X, y, folds = data
    again = search_cnn(X, y, folds=folds, budget=BUDGET, seed=7, directory=tmp_path,
                       space=SPACE, progress=False)
    assert again.trials["hyperparameters"].tolist() == first_search.trials[
        "hyperparameters"].tolist()
    np.testing.assert_array_equal(again.trials["cv_rmse"], first_search.trials["cv_rmse"])
    np.testing.assert_array_equal(again.oof_predictions, first_search.oof_predictions)


class _Killed(BaseException):
    """Stands in for the process being killed mid-trial."""


def test_killed_search_resumes_and_resume_false_starts_over(data, tmp_path, monkeypatch,
                                                            capsys):
    X, y, folds = data
    budget = {**BUDGET, "max_epochs": 5}
    real = tuner_module.cross_validate
    calls = []

    def dies_in_second_trial(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise _Killed
        return real(*args, **kwargs)

    monkeypatch.setattr(tuner_module, "cross_validate", dies_in_second_trial)
    with pytest.raises(_Killed):
        search_cnn(X, y, folds=folds, budget=budget, seed=3, directory=tmp_path, space=SPACE,
                   progress=False)
    monkeypatch.setattr(tuner_module, "cross_validate", real)
    first_record = (tmp_path / "cnn1d_search" / "trial_0" / "cross_validation.json").read_text()

    resumed = search_cnn(X, y, folds=folds, budget=budget, seed=3, directory=tmp_path,
                         space=SPACE, progress=False, resume=True)
    assert capsys.readouterr().out == ""  # not even Keras-Tuner's "Reloading Tuner from"
    assert resumed.trials["trial_id"].tolist() == ["0", "1"]
    assert set(resumed.trials["status"]) == {"COMPLETED"}
    # trial 0 was not run again: its stored record is untouched
    assert (tmp_path / "cnn1d_search" / "trial_0" / "cross_validation.json").read_text() \
        == first_record
    assert json.loads(first_record)["seconds"] == pytest.approx(resumed.timings["seconds"][0])

    with pytest.raises(ValueError, match="seed"):
        search_cnn(X, y, folds=folds, budget=budget, seed=4, directory=tmp_path, space=SPACE,
                   progress=False, resume=True)

    fresh = search_cnn(X, y, folds=folds, budget={**budget, "trials": 1}, seed=3,
                       directory=tmp_path, space=SPACE, progress=False)
    assert fresh.trials["trial_id"].tolist() == ["0"]  # old trials were wiped, not resumed


@pytest.mark.parametrize("tuner", ["random", "hyperband"])
def test_other_tuners_run_and_progress_goes_to_stderr_only(data, tuner, capsys):
    X, y, _ = data
    result = search_cnn(X[:40], y[:40], budget={"trials": 1, "max_epochs": 3, "folds": 2},
                        seed=0, tuner=tuner, space=SPACE, progress=True)
    assert len(result.trials) == 1 and np.isfinite(result.cv_rmse)
    assert result.ensemble.n_folds == 2 and result.directory is None
    captured = capsys.readouterr()
    assert captured.out == ""  # Keras-Tuner's own prints are routed to logging
    assert "CNN search" in captured.err and "best_cv_rmse" in captured.err


def test_make_folds_is_balanced_reproducible_and_round_trips():
    ids = [f"id{i}" for i in range(31)]
    folds = make_folds(ids, 10, seed=5)
    assert folds == make_folds(ids, 10, seed=5)
    assert folds != make_folds(ids, 10, seed=6)
    sizes = np.bincount(folds.assignment)
    assert sizes.size == 10 and sizes.max() - sizes.min() <= 1
    validated = np.concatenate([v for _, v in folds.split()])
    assert sorted(validated.tolist()) == list(range(31))
    restored = Folds.from_dict(json.loads(json.dumps(folds.to_dict())))
    assert restored == folds and restored.seed == 5
    shuffled = ids[::-1]
    aligned = folds.aligned_to(shuffled)
    assert [sorted(v) for v in aligned.validation_ids()] == [
        sorted(v) for v in folds.validation_ids()
    ]
    assert aligned.sample_ids.tolist() == shuffled
    with pytest.raises(ValueError, match="n_splits"):
        make_folds(5, 10)
    with pytest.raises(ValueError, match="unique"):
        make_folds(["a", "a", "b"], 2)


def test_bad_arguments_are_named(data):
    X, y, folds = data
    with pytest.raises(ValueError, match="unknown budget key 'epochs'"):
        resolve_budget({"epochs": 3})
    with pytest.raises(ValueError, match="tuner"):
        search_cnn(X, y, folds=folds, tuner="grid", progress=False)
    with pytest.raises(ValueError, match="folds cover"):
        search_cnn(X[:50], y[:50], folds=folds, progress=False)
    with pytest.raises(ValueError, match="resume"):
        search_cnn(X, y, folds=folds, resume=True, progress=False)
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        search_cnn(bad, y, folds=folds, progress=False)


@pytest.mark.parametrize("tuner", ["bayesian", "random"])
def test_initial_trials_come_first_in_order(data, tmp_path, tuner):
    """The named network and a given dict are the first two trials (missing values: the
    space's defaults); the oracle's own proposals follow."""
    X, y, folds = data
    given = {"conv_blocks": 1, "fc_blocks": 1, "conv_0_filters": 8, "fc_0_units": 16}
    budget = {**BUDGET, "trials": 3, "initial_trials": ["tiny", given]}
    import localsoc.models.cnn1d as cnn1d

    tiny = {"conv_blocks": 1, "fc_blocks": 1, "conv_0_filters": 4, "conv_0_kernel_size": 3,
            "fc_0_units": 8, "learning_rate": 5e-3}
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(cnn1d.KNOWN_NETWORKS, "tiny", {"source": "test", "values": tiny})
        result = search_cnn(X, y, folds=folds, budget=budget, seed=7, tuner=tuner,
                            directory=tmp_path, space=SPACE, progress=False)
    trials = result.trials.sort_values("trial_id")
    first, second, third = (dict(h) for h in trials["hyperparameters"])
    assert {k: first[k] for k in tiny} == tiny
    assert {k: second[k] for k in given} == given
    assert second["learning_rate"] == pytest.approx(3e-3)  # the space's default (its min)
    assert third != first and third != second


def test_an_initial_trial_outside_the_space_is_named(data, tmp_path):
    X, y, folds = data
    budget = {**BUDGET, "initial_trials": [{"conv_0_filters": 4096}]}
    with pytest.raises(ValueError, match="conv_0_filters = 4096 lies outside"):
        search_cnn(X, y, folds=folds, budget=budget, seed=7, directory=tmp_path, space=SPACE,
                   progress=False)
    with pytest.raises(ValueError, match="not one of"):
        search_cnn(X, y, folds=folds, budget={**BUDGET, "initial_trials": ["nope"]}, seed=7,
                   directory=tmp_path, space=SPACE, progress=False)


def test_known_networks_build_and_lie_in_the_full_space():
    """The paper's published networks and the compact one are valid points of the default
    search space and build on the project's 211-band grid."""
    import keras_tuner

    from localsoc.models.cnn1d import KNOWN_NETWORKS, build_cnn1d, weight_layers
    from localsoc.models.keras_tuner_adapter import given_values
    from localsoc.models.tuner import CNN1DHyperModel

    hp = keras_tuner.HyperParameters()
    CNN1DHyperModel(211, {}).build(hp)
    oracle = type("Oracle", (), {"hyperparameters": hp})()
    for name, entry in KNOWN_NETWORKS.items():
        values = given_values(oracle, entry["values"], name)
        model = build_cnn1d(values, 211, {})
        conv = sum(1 for layer in weight_layers(model) if layer.name.startswith("conv_"))
        assert conv == entry["values"]["conv_blocks"], name


def test_search_config_from_the_train_parameters():
    """``SearchConfig.from_params`` reads the conf keys of ``params:train``; a config and the
    same settings as keywords are one or the other, not both."""
    from localsoc.models.search import SearchConfig

    params = {"tuner": "random", "space": {}, "progress": False, "threads": 2,
              "distributed": {"enabled": False}}
    config = SearchConfig.from_params(params, {"trials": 2}, 11, "site/local")
    assert config == SearchConfig(budget={"trials": 2}, seed=11, tuner="random", space=None,
                                  progress=False, threads=2, project_name="site_local",
                                  distributed={"enabled": False})
    with pytest.raises(KeyError, match="distributed"):
        SearchConfig.from_params({k: v for k, v in params.items() if k != "distributed"},
                                 {}, 0, "x")
    with pytest.raises(TypeError, match="not both"):
        search_cnn(np.zeros((6, 4)), np.zeros(6), config, seed=3)
