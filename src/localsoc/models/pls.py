"""PLSR baselines with the number of components chosen by K-fold cross-validation.

Two baselines per site sit beside the CNNs, so a user sees whether a CNN earns
its cost:

* **local PLSR**: fitted on the n local calibration samples only
  (``fit_pls_cv(X_local, y_local)``);
* **RS-LOCAL + PLSR** (Lobsey et al. 2017): fitted on the k library samples that RS-LOCAL
  selected plus the n local samples (``fit_rslocal_pls(...)``, which stacks them).

The model is ``sklearn.cross_decomposition.PLSRegression(scale=False)`` (X and y centred, not
scaled). For each candidate number of components a = 1..A, the out-of-fold predictions of every
sample are pooled and their RMSE is ``cv_rmse_[a - 1]``; the smallest wins (ties: fewer
components). A = min(max_components, smallest training fold - 1, number of bands). Each fold is
fitted once with A components: NIPALS components are nested, so the a-component model is the
first a columns of the weights W, loadings P and y-loadings q, with coefficients
``W_a pinv(P_a^T W_a) q_a`` (what ``PLSRegression`` computes; the tests compare with refits).
Folds: ``KFold(cv, shuffle=True, random_state)`` for an integer ``cv``, or any splitter or
explicit list of ``(train, test)`` index pairs, so every model of a site can share its folds.
"""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.cross_decomposition import PLSRegression
from sklearn.model_selection import KFold
from sklearn.utils.validation import check_is_fitted, validate_data


class PLSRegressionCV(RegressorMixin, BaseEstimator):
    """PLS regression (no scaling) with the number of components chosen by K-fold CV RMSE.

    Parameters
    ----------
    max_components : int, default 20
        Largest number of components tried (capped by the smallest training fold - 1 and the
        number of features).
    cv : int, CV splitter or iterable of (train, test) index arrays, default 10
        An integer means ``KFold(cv, shuffle=True, random_state=random_state)``.
    random_state : int or None
        Seed of the fold shuffle (integer ``cv`` only).

    Attributes
    ----------
    n_components_ : int, the chosen number of components.
    cv_rmse_ : ndarray (A,), pooled out-of-fold RMSE with 1..A components.
    oof_predictions_ : ndarray (n_samples,), out-of-fold predictions with ``n_components_``.
    estimator_ : PLSRegression refitted on all the data with ``n_components_``.
    x_mean_ : ndarray (n_features,), the mean spectrum that ``estimator_`` centres X by, so
        ``predict(X) = (X - x_mean_) @ estimator_.coef_.T + estimator_.intercept_``
        (``PLSRegression`` keeps it only as a private attribute; the tests check the identity).
    folds_ : list of (train, test) index arrays actually used.
    n_features_in_ : int
    """

    def __init__(self, max_components: int = 20, cv=10, random_state=None):
        self.max_components = max_components
        self.cv = cv
        self.random_state = random_state

    def _folds(self, X: np.ndarray, y: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        n = len(X)
        cv = self.cv
        if isinstance(cv, numbers.Integral) and not isinstance(cv, bool):
            if not 2 <= cv <= n:
                raise ValueError(
                    f"cv={cv} folds needs 2 <= cv <= n_samples ({n}); lower cv or add samples."
                )
            splitter = KFold(n_splits=int(cv), shuffle=True, random_state=self.random_state)
            return list(splitter.split(X))
        if hasattr(cv, "split") and not isinstance(cv, str):
            return [(np.asarray(a), np.asarray(b)) for a, b in cv.split(X, y)]
        try:
            if isinstance(cv, str):
                raise TypeError(cv)
            folds = [(np.asarray(a), np.asarray(b)) for a, b in cv]
        except (TypeError, ValueError):
            raise ValueError(
                "cv must be an integer (number of folds), a splitter with .split(), or a list "
                f"of (train, test) index pairs; got {cv!r}."
            ) from None
        if len(folds) < 2:
            raise ValueError(f"cv must give at least 2 folds; got {len(folds)}.")
        return folds

    def fit(self, X, y):
        """Choose the number of components by CV, then refit on all of X, y."""
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True, ensure_min_samples=3)
        if y.ndim == 2:
            if y.shape[1] != 1:
                raise ValueError(f"y must be one target (n_samples,); got shape {y.shape}.")
            y = y[:, 0]
        max_components = self.max_components
        if (
            isinstance(max_components, bool)
            or not isinstance(max_components, numbers.Integral)
            or max_components < 1
        ):
            raise ValueError(f"max_components must be a positive integer; got {max_components!r}.")
        folds = self._folds(X, y)
        smallest_train = min(len(train) for train, _ in folds)
        n_max = min(int(max_components), smallest_train - 1, X.shape[1])
        if n_max < 1:
            raise ValueError(
                f"the smallest training fold has {smallest_train} samples, too few for one PLS "
                "component; use fewer folds or more samples."
            )
        oof = np.full((n_max, len(X)), np.nan)
        for train, test in folds:
            oof[:, test] = components_predictions(X[train], y[train], X[test], n_max)
        if np.isnan(oof).any():
            raise ValueError("the CV folds must cover every sample in a test fold at least once.")
        self.cv_rmse_ = np.sqrt(np.mean((oof - y) ** 2, axis=1))
        self.n_components_ = int(np.argmin(self.cv_rmse_)) + 1
        self.oof_predictions_ = oof[self.n_components_ - 1]
        self.folds_ = folds
        self.estimator_ = PLSRegression(n_components=self.n_components_, scale=False).fit(X, y)
        # PLSRegression centres X by X.mean(axis=0): the same call on the same array, same bits
        self.x_mean_ = X.mean(axis=0)
        return self

    def predict(self, X):
        """SOC estimates, shape (n_samples,)."""
        check_is_fitted(self, "estimator_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self.estimator_.predict(X).ravel()


def components_predictions(
    X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray, n_max: int
) -> np.ndarray:
    """Predictions of X_test with 1..n_max components from one n_max-component fit."""
    model = PLSRegression(n_components=n_max, scale=False).fit(X_train, y_train)
    W, P = model.x_weights_, model.x_loadings_
    q = model.y_loadings_[0]
    centred = X_test - X_train.mean(axis=0)
    predictions = np.empty((n_max, len(X_test)))
    for a in range(1, n_max + 1):
        coef = W[:, :a] @ np.linalg.pinv(P[:, :a].T @ W[:, :a]) @ q[:a]
        predictions[a - 1] = y_train.mean() + centred @ coef
    return predictions


def fit_pls_cv(X, y, max_components: int = 20, cv=10, random_state=None) -> PLSRegressionCV:
    """Fit a :class:`PLSRegressionCV` (the local PLSR baseline when X, y are the local data)."""
    return PLSRegressionCV(max_components=max_components, cv=cv, random_state=random_state).fit(
        X, y
    )


def fit_rslocal_pls(
    X_library,
    y_library,
    selected_indices,
    X_local,
    y_local,
    max_components: int = 20,
    cv=10,
    random_state=None,
) -> PLSRegressionCV:
    """RS-LOCAL + PLSR: fit on the selected library rows stacked above the local samples."""
    selected_indices = np.asarray(selected_indices)
    X = np.vstack([np.asarray(X_library)[selected_indices], np.asarray(X_local)])
    y = np.concatenate([np.asarray(y_library)[selected_indices], np.asarray(y_local)])
    return fit_pls_cv(X, y, max_components=max_components, cv=cv, random_state=random_state)
