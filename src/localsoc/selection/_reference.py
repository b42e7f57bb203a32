"""Plain NumPy twins of the compiled selection kernels (``native/*.pyx``).

They exist to be read and to check the compiled code: on the same input the Kennard-Stone twin
returns the same selection bit for bit, and the RS-LOCAL twin returns the same subset scores to
rounding error (the tests hold them to 1e-8). They are slow and plain: one subset at a time,
no tricks.

Kennard-Stone distances use one fixed arithmetic, shared with the compiled kernel so that exact
ties break the same way: sixteen interleaved accumulators, a sequential tail and a fixed
reduction tree (spelled out in ``native/kennard_stone.pyx``).

RS-LOCAL subsets are fitted with textbook NIPALS PLS1 on explicitly centred and deflated copies
(``X_a+1 = X_a - t_a p_a^T``, ``y_a+1 = y_a - q_a t_a``), the form the compiled kernel rewrites
without copies; see ``native/rslocal.pyx`` for the equations.
"""

from __future__ import annotations

import numpy as np

RESPONSE = 0
RECONSTRUCTION = 1
STOP_RELATIVE_NORM = 1e-10  # stop adding factors when ||X_a^T y_a|| <= this * ||X_1^T y_1||


def _combine(accumulators: np.ndarray, tail: np.ndarray | float) -> np.ndarray:
    """The kernel's final reduction of 16 accumulators (rows) and the tail."""
    half = accumulators[:8] + accumulators[8:]
    quarter = half[:4] + half[4:]
    return ((quarter[0] + quarter[2]) + (quarter[1] + quarter[3])) + tail


def exact_squared_distances(rows: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances from each row of ``rows`` (m, p) to ``x`` (p,) or to the
    matching row of ``x`` (m, p), in the fixed arithmetic of the compiled kernel.

    ``np.add.accumulate`` adds strictly left to right, so its last column is the sequential
    sum of an accumulator's terms.
    """
    difference = np.asarray(rows, dtype=np.float64) - np.asarray(x, dtype=np.float64)
    squares = difference * difference
    m, p = squares.shape
    n16 = p - p % 16
    accumulators = np.zeros((16, m))
    if n16:
        for group in range(16):
            accumulators[group] = np.add.accumulate(squares[:, group:n16:16], axis=1)[:, -1]
    tail = np.add.accumulate(squares[:, n16:], axis=1)[:, -1] if p > n16 else 0.0
    return _combine(accumulators, tail)


def kennard_stone_reference(
    X: np.ndarray, first: int, second: int, n_select: int
) -> tuple[np.ndarray, np.ndarray]:
    """The classic Kennard-Stone loop from a given starting pair.

    Returns ``(selected, selected_squared)``: the selection order and, for each pick, its squared
    distance to the nearest earlier pick (entry 0 repeats the pair distance). Ties go to the
    lowest index. Memory O(N): a running vector of nearest-selected squared distances.
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    columns = np.ascontiguousarray(X.T)  # (p, N): each feature contiguous over samples
    n, p = X.shape
    n16 = p - p % 16

    def distances_to(row: int) -> np.ndarray:
        accumulators = np.zeros((16, n))
        tail = np.zeros(n)
        for feature in range(p):
            difference = columns[feature] - X[row, feature]
            if feature < n16:
                accumulators[feature % 16] += difference * difference
            else:
                tail += difference * difference
        return _combine(accumulators, tail)

    selected = np.empty(n_select, dtype=np.intp)
    selected_squared = np.empty(n_select, dtype=np.float64)
    min_squared = np.minimum(distances_to(first), distances_to(second))
    selected[:2] = first, second
    pair = exact_squared_distances(X[[first]], X[second])[0]
    selected_squared[:2] = pair
    min_squared[[first, second]] = -1.0
    for step in range(2, n_select):
        best = int(np.argmax(min_squared))  # first maximum: the lowest index wins ties
        selected[step] = best
        selected_squared[step] = min_squared[best]
        min_squared[best] = -1.0
        if step + 1 < n_select:
            unselected = min_squared >= 0.0
            min_squared[unselected] = np.minimum(
                min_squared[unselected], distances_to(best)[unselected]
            )
    return selected, selected_squared


def pls1_nipals(
    X: np.ndarray, y: np.ndarray, n_components: int
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray, np.ndarray]:
    """Textbook NIPALS PLS1 with centring (``PLSRegression(scale=False)``).

    Returns ``(x_mean, y_mean, W, P, q)`` with W and P of shape (p, a) and q of shape (a,),
    a <= n_components (fewer when the deflated cross-product vanishes: rank exhausted).
    """
    x_mean = X.mean(axis=0)
    y_mean = float(y.mean())
    X_deflated = X - x_mean
    y_deflated = y - y_mean
    weights, loadings, y_loadings = [], [], []
    first_norm = None
    for _ in range(n_components):
        w = X_deflated.T @ y_deflated
        norm = float(np.sqrt(w @ w))
        if first_norm is None:
            first_norm = norm
        if norm <= STOP_RELATIVE_NORM * first_norm:
            break
        w = w / norm
        t = X_deflated @ w
        tt = float(t @ t)
        if not tt > 0:
            break
        p_loading = X_deflated.T @ t / tt
        q_loading = float(y_deflated @ t) / tt
        X_deflated = X_deflated - np.outer(t, p_loading)
        y_deflated = y_deflated - q_loading * t
        weights.append(w)
        loadings.append(p_loading)
        y_loadings.append(q_loading)
    p = X.shape[1]
    W = np.array(weights).T.reshape(p, len(weights))
    P = np.array(loadings).T.reshape(p, len(loadings))
    return x_mean, y_mean, W, P, np.array(y_loadings, dtype=np.float64)


def pls1_score(
    X: np.ndarray,
    y: np.ndarray,
    X_local: np.ndarray,
    y_local: np.ndarray,
    n_components: int,
    scoring: int,
) -> float:
    """Score one subset: response RMSE on y_local, or reconstruction RMSE of X_local."""
    x_mean, y_mean, W, P, q = pls1_nipals(X, y, n_components)
    X_centred = X_local - x_mean
    if W.shape[1] == 0:
        rotations = W
    else:
        rotations = W @ np.linalg.inv(P.T @ W)
    if scoring == RESPONSE:
        predictions = y_mean + X_centred @ (rotations @ q)
        return float(np.sqrt(np.mean((y_local - predictions) ** 2)))
    residual = X_centred - (X_centred @ rotations) @ P.T
    return float(np.sqrt(np.mean(residual**2)))


def score_subsets_reference(
    X_library: np.ndarray,
    y_library: np.ndarray,
    X_local: np.ndarray,
    y_local: np.ndarray,
    subsets: np.ndarray,
    n_components: int,
    scoring: int,
) -> np.ndarray:
    """One PLS1 fit and score per row of ``subsets`` (library row indices), in float64."""
    X_library = np.asarray(X_library, dtype=np.float64)
    y_library = np.asarray(y_library, dtype=np.float64)
    X_local = np.asarray(X_local, dtype=np.float64)
    y_local = np.asarray(y_local, dtype=np.float64)
    scores = np.empty(len(subsets), dtype=np.float64)
    for index, rows in enumerate(subsets):
        scores[index] = pls1_score(
            X_library[rows], y_library[rows], X_local, y_local, n_components, scoring
        )
    return scores
