"""Prediction intervals from out-of-fold residuals, and the applicability domain of a model.

Intervals. ``level`` is 1 - alpha throughout. Every rank below is computed as
``ceil((n + 1) * level)`` in floating point, as ``conformal_halfwidth`` always has; where
``(n + 1) * level`` is an integer in exact arithmetic but rounds up in floating point (e.g.
10 * 0.7) this takes one rank more, which only widens an interval.

- ``conformal_halfwidth``: the ceil((n + 1) * level)-th smallest absolute residual
  r_i = |y_i - yhat_i| of n samples (infinite when that rank exceeds n), a symmetric
  half-width. Two uses. (a) The evaluate stage's ``validation`` interval (its default): the
  residuals of the served model on the site's random validation samples, which it never
  trained on or chose with: split conformal proper (Vovk, Gammerman & Shafer 2005; Lei et al.
  2018, theorem 2.1), coverage >= level for a new point exchangeable with the validation
  samples (and < level + 1/(n + 1) without ties), marginally over the validation draw.
  (b) The ``plain`` interval: the n out-of-fold calibration residuals around the *final*
  model's estimate (the fold ensemble or the refit). This is the split-conformal quantile
  applied to K-fold out-of-fold residuals. It is NOT CV+ and has no
  finite-sample guarantee: split conformal guarantees coverage >= 1 - alpha only when the
  residuals come from the very model that makes the new estimate and that model never saw the
  calibration samples; here each residual comes from a fold model trained without the sample,
  while the interval is centred on a model trained on all of them (usually a little better, so
  the interval tends to be slightly conservative, but nothing is proved). It is approximately
  valid when the fitting algorithm is stable.
- ``split_conformal_coverage_law``: how far the coverage one field's validation interval
  achieves varies from one validation draw to another (Beta(k, m + 1 - k)): the guarantee in
  (a) is an average over draws, and m sets the spread.
- ``cv_plus_interval`` / ``jackknife_plus_interval``: the CV+ and jackknife+ intervals of
  Barber, Candès, Ramdas & Tibshirani (2021), "Predictive inference with the jackknife+", Ann.
  Statist. 49(1):486-507. They need each fold model's estimate of the new point, and carry a
  finite-sample guarantee (>= 1 - 2 alpha, see the functions).
- ``normalized_halfwidths``: the locally weighted (normalised-score) conformal interval of Lei,
  G'Sell, Rinaldo, Tibshirani & Wasserman (2018), "Distribution-free predictive inference for
  regression", JASA 113(523):1094-1111 (section 5.2): score |r_i| / sigma_i for a difficulty
  sigma, half-width q * sigma_new.
- ``weighted_conformal_halfwidth``: the weighted conformal quantile of Tibshirani, Barber,
  Candès & Ramdas (2019), "Conformal prediction under covariate shift", NeurIPS 32, for
  calibration and target samples that differ in the distribution of x (weights = density
  ratios); ``ShiftWeights`` estimates those ratios from unlabelled spectra.
- ``clip_interval``: SOC content cannot be negative; clip the bounds at 0.

Applicability domain: a PCA fitted on the model's training spectra; Hotelling's T2 in the
retained components and the Q (squared reconstruction) residual. Thresholds are empirical
quantiles of the training samples' own T2 and Q at ``quantile`` (default 0.99). A spectrum is
in the domain when both statistics are at or below their thresholds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def conformal_halfwidth(observed, oof_estimated, level: float = 0.9) -> float:
    """Split-conformal half-width at ``level`` from held-out residuals.

    With the residuals of the very model that makes the new estimate, on samples it never saw
    (the evaluate stage's validation samples), this is split conformal and estimate +-
    half-width covers a new exchangeable point with probability >= ``level``. With K-fold
    out-of-fold residuals around another model, read on:

    Returns the ceil((n + 1) * level)-th smallest |observed_i - oof_estimated_i| (infinite when
    that rank exceeds n). Used as estimate +- half-width around the final (fold-ensemble or
    refit) model, it has no finite-sample coverage guarantee, because that model is not the one
    that produced the residuals; the >= ``level`` guarantee of split conformal holds only when
    the residuals come from a held-out calibration set scored by the same model that makes the
    new estimate. With K-fold out-of-fold residuals around the full model it is approximately
    valid (for stable fitting algorithms). See ``cv_plus_interval`` for the version with a
    guarantee.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1); got {level}")
    y = np.asarray(observed, dtype=np.float64).ravel()
    yhat = np.asarray(oof_estimated, dtype=np.float64).ravel()
    if y.shape != yhat.shape or y.size == 0:
        raise ValueError("observed and out-of-fold estimates must be non-empty and equally long")
    residuals = np.sort(np.abs(y - yhat))
    rank = math.ceil((y.size + 1) * level)
    return float("inf") if rank > y.size else float(residuals[rank - 1])


@dataclass(frozen=True)
class CoverageLaw:
    """The distribution, over the draw of its m calibration samples, of the coverage that one
    split-conformal interval achieves on its population (``split_conformal_coverage_law``)."""

    m: int  #: calibration (validation) residuals
    rank: int  #: the half-width is the rank-th smallest of them: ceil((m + 1) level)
    level: float
    mean: float  #: rank / (m + 1): the marginal coverage (>= level)
    q05: float  #: 5 % of calibration draws give a coverage below this
    q95: float  #: and 5 % above this

    def below(self, coverage: float) -> float:
        """The probability that a draw of the m calibration samples gives an interval whose
        coverage of the population is below ``coverage``."""
        from scipy.stats import beta

        return float(beta.cdf(coverage, self.rank, self.m + 1 - self.rank))

    def sentence(self) -> str:
        """One line for a report or model card."""
        return (f"with m = {self.m} validation samples the share of the field this interval "
                f"covers varies from one validation draw to another as Beta({self.rank}, "
                f"{self.m + 1 - self.rank}): mean {self.mean:.3f}, 5th-95th percentile "
                f"{self.q05:.2f}-{self.q95:.2f}")


def split_conformal_coverage_law(m: int, level: float = 0.9) -> CoverageLaw:
    """How the coverage of a split-conformal interval varies from one calibration draw to
    another (training-conditional coverage; Vovk 2012, "Conditional validity of inductive
    conformal predictors", ACML, PMLR 25:475-490; Angelopoulos & Bates 2023, section 3.2).

    With m exchangeable calibration residuals (continuous, no ties) and the half-width their
    k-th smallest, k = ceil((m + 1) level) as in ``conformal_halfwidth``, the share of the
    population the interval covers is Beta(k, m + 1 - k): its mean k / (m + 1) is the marginal
    guarantee; its spread is what one field's realised coverage varies by (m = 20 at 90 %:
    Beta(19, 2), s.d. 0.063). A finite test set adds its own binomial noise to a measured
    coverage. Raises ValueError when k > m (an infinite interval: a finite one needs m >= 9 at
    90 %).
    """
    from scipy.stats import beta

    level = _check_level(level)
    m = int(m)
    rank = math.ceil((m + 1) * level)
    if m < 1 or rank > m:
        raise ValueError(f"{m} residuals are too few for a finite {level:.0%} split-conformal "
                         f"interval (it needs ceil((m + 1) level) <= m)")
    law = beta(rank, m + 1 - rank)
    return CoverageLaw(m=m, rank=rank, level=level, mean=rank / (m + 1),
                       q05=float(law.ppf(0.05)), q95=float(law.ppf(0.95)))


def interval_coverage(observed, lower, upper) -> float:
    """Share of observed values inside [lower, upper]."""
    y = np.asarray(observed, dtype=np.float64)
    return float(np.mean((y >= np.asarray(lower)) & (y <= np.asarray(upper))))


def _check_level(level: float) -> float:
    level = float(level)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1); got {level}")
    return level


def _upper_rank(n: int, level: float) -> int:
    """ceil((n + 1) * level), computed as ``conformal_halfwidth`` computes it."""
    return math.ceil((n + 1) * level)


def _calibration_pair(y_cal, oof_cal) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_cal, dtype=np.float64).ravel()
    yhat = np.asarray(oof_cal, dtype=np.float64).ravel()
    if y.shape != yhat.shape or y.size == 0:
        raise ValueError("observed and out-of-fold estimates must be non-empty and equally long")
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(yhat))):
        raise ValueError("observed and out-of-fold estimates must be finite")
    return y, yhat


def _fold_estimates(fold_of_cal, fold_predictions_new, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(the fold of each of the n calibration samples, the (K, m) fold estimates of the new
    points), checked."""
    folds = np.asarray(fold_of_cal).ravel()
    if folds.shape != (n,) or not np.issubdtype(folds.dtype, np.integer):
        raise ValueError("fold_of_cal must hold one integer fold index per calibration sample")
    predictions = np.asarray(fold_predictions_new, dtype=np.float64)
    if predictions.ndim == 1:
        predictions = predictions[:, None]
    if predictions.ndim != 2:
        raise ValueError("fold_predictions_new must have shape (K, m)")
    if folds.min() < 0 or folds.max() >= predictions.shape[0]:
        raise ValueError(f"fold indices must lie in [0, {predictions.shape[0]}) "
                         "(the rows of fold_predictions_new)")
    return folds, predictions


def _rescaled(residuals: np.ndarray, difficulty_cal, difficulty_new, n: int,
              m: int) -> np.ndarray:
    """Residuals R_i rescaled to each new point: R_i sigma(x) / sigma_i, shape (n, m)."""
    sigma_cal = np.asarray(difficulty_cal, dtype=np.float64).ravel()
    sigma_new = np.asarray(difficulty_new, dtype=np.float64).ravel()
    if sigma_cal.shape != (n,) or sigma_new.shape != (m,):
        raise ValueError("difficulties: one per calibration sample and one per new point")
    if not (np.all(sigma_cal > 0) and np.all(sigma_new > 0)):
        raise ValueError("difficulties must be positive")
    return residuals / sigma_cal[:, None] * sigma_new[None, :]


def cv_plus_interval(y_cal, oof_cal, fold_of_cal, fold_predictions_new,
                     level: float = 0.9, difficulty_cal=None,
                     difficulty_new=None) -> tuple[np.ndarray, np.ndarray]:
    """The CV+ interval of Barber, Candès, Ramdas & Tibshirani (2021, Ann. Statist. 49(1),
    section 3, "CV+"), vectorised over new points.

    Parameters: ``y_cal`` (n,) observed values of the calibration samples; ``oof_cal`` (n,)
    their out-of-fold estimates mu_{-k(i)}(x_i), each from the fold model k(i) that did not
    train on sample i; ``fold_of_cal`` (n,) the integer fold k(i) in [0, K) of each sample,
    i.e. the row of ``fold_predictions_new`` holding that fold model's estimates;
    ``fold_predictions_new`` (K, m) (or (K,) for one point) the estimates mu_{-k}(x) of every
    fold model k at each new point x.

    With R_i = |y_i - mu_{-k(i)}(x_i)| and alpha = 1 - level:
    lower(x) = the floor(alpha (n + 1))-th smallest of {mu_{-k(i)}(x) - R_i},
    upper(x) = the ceil((1 - alpha)(n + 1))-th smallest of {mu_{-k(i)}(x) + R_i};
    -inf / +inf when the rank falls outside 1..n (too few calibration samples for the level).
    The lower rank is taken as n + 1 - ceil((n + 1) * level), which equals
    floor(alpha (n + 1)).

    Guarantee (Barber et al. 2021, Theorem 4): for exchangeable calibration and new samples,
    any fitting algorithm that treats its training points symmetrically, and K folds of equal
    size n / K, P(y_new in [lower, upper]) >= 1 - 2 alpha - min{2 (1 - 1/K) / (n/K + 1),
    (1 - K/n) / (K + 1)} (>= 1 - 2 alpha - sqrt(2 / n)); in practice coverage is close to
    1 - alpha. The guarantee needs the estimates of the new point from the *fold* models (not
    from a refit) and the folds to partition exactly the calibration samples.

    Normalised CV+ (``difficulty_cal`` (n,) and ``difficulty_new`` (m,) given, both known
    without labels): the residuals are rescaled to each new point, R_i -> R_i sigma(x) /
    sigma_i, i.e. CV+ on the normalised score |y - mu| / sigma of Lei et al. (2018, section
    5.2), so the width follows the point's difficulty. With sigma computed symmetrically for
    the calibration and the new points (e.g. ``domain_difficulty`` of a domain that did not
    contain them) the same guarantee applies to the normalised score; with sigma_new from a
    domain fitted on all training spectra it is approximate.

    Returns (lower, upper), arrays of shape (m,).
    """
    level = _check_level(level)
    y, yhat = _calibration_pair(y_cal, oof_cal)
    n = y.size
    folds, predictions = _fold_estimates(fold_of_cal, fold_predictions_new, n)
    residuals = np.abs(y - yhat)[:, None]  # (n, 1)
    mu = predictions[folds]  # (n, m): mu_{-k(i)}(x) for every calibration sample i
    m = mu.shape[1]
    if (difficulty_cal is None) != (difficulty_new is None):
        raise ValueError("give both difficulty_cal and difficulty_new, or neither")
    if difficulty_cal is not None:
        residuals = _rescaled(residuals, difficulty_cal, difficulty_new, n, m)  # (n, m)
    upper_rank = _upper_rank(n, level)
    lower_rank = n + 1 - upper_rank
    if upper_rank > n:
        upper = np.full(m, np.inf)
    else:
        upper = np.partition(mu + residuals, upper_rank - 1, axis=0)[upper_rank - 1]
    if lower_rank < 1:
        lower = np.full(m, -np.inf)
    else:
        lower = np.partition(mu - residuals, lower_rank - 1, axis=0)[lower_rank - 1]
    return lower, upper


def jackknife_plus_interval(y_cal, loo_cal, loo_predictions_new,
                            level: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """The jackknife+ interval of Barber et al. (2021, Ann. Statist. 49(1), section 2): CV+
    with K = n, one calibration sample per fold.

    ``loo_cal`` (n,) holds the leave-one-out estimates mu_{-i}(x_i); ``loo_predictions_new``
    (n, m) the estimate of each leave-one-out model i at each new point. Guarantee (Theorem 1):
    P(y_new in [lower, upper]) >= 1 - 2 alpha for exchangeable data and a symmetric fitting
    algorithm; about 1 - alpha in practice for stable algorithms.
    """
    n = np.asarray(y_cal).size
    return cv_plus_interval(y_cal, loo_cal, np.arange(n), loo_predictions_new, level)


def normalized_halfwidths(y_cal, oof_cal, difficulty_cal, difficulty_new,
                          level: float = 0.9, floor_fraction: float = 0.01) -> np.ndarray:
    """Per-new-point half-widths of the normalised-score (locally weighted) conformal interval
    of Lei, G'Sell, Rinaldo, Tibshirani & Wasserman (2018, JASA 113(523), section 5.2).

    Score s_i = |y_i - oof_i| / sigma_i with sigma a difficulty known without the label (e.g.
    the spread of the fold ensemble's estimates, or a distance to the training spectra);
    q = the ceil((n + 1) * level)-th smallest s_i (infinite when that rank exceeds n); the
    half-width at a new point is q * sigma_new, so the interval is estimate_new +- q * sigma_new.

    Floor: sigma = max(difficulty, 0) + floor_fraction * median(max(difficulty_cal, 0)) for both
    the calibration and the new points (if that median is 0, the median of the positive
    calibration difficulties is used; if none is positive, every sigma is 1 and this reduces to
    ``conformal_halfwidth``), so zero or negative difficulties cannot give zero widths or
    division by zero.

    Guarantee: marginal coverage >= ``level`` (split conformal) when the calibration samples
    and the new point are exchangeable as triples (x, y, sigma), the estimates come from a
    model that did not train on the calibration samples, and sigma is computed without the
    point's label (the floor uses calibration difficulties only, never labels). With K-fold
    out-of-fold residuals around a final refit / ensemble model, as with
    ``conformal_halfwidth``, the result is only approximately valid. The coverage is marginal,
    not conditional on x; the normalisation makes widths adapt to the difficulty.
    """
    sigma_new = np.asarray(difficulty_new, dtype=np.float64)
    if not np.all(np.isfinite(sigma_new)):
        raise ValueError("difficulties must be finite")
    q, floor = normalized_score_quantile(y_cal, oof_cal, difficulty_cal, level, floor_fraction)
    if floor is None:  # no positive calibration difficulty: the plain conformal half-width
        return q * np.ones_like(sigma_new)
    return q * (np.maximum(sigma_new, 0.0) + floor)


def normalized_score_quantile(y_cal, oof_cal, difficulty_cal, level: float = 0.9,
                              floor_fraction: float = 0.01) -> tuple[float, float | None]:
    """(q, floor) of ``normalized_halfwidths``: the half-width at a new point of difficulty d is
    q * (max(d, 0) + floor) (floor None: no positive calibration difficulty, the half-width is
    q for every point). What a served model stores to give the same intervals."""
    level = _check_level(level)
    y, yhat = _calibration_pair(y_cal, oof_cal)
    sigma_cal = np.asarray(difficulty_cal, dtype=np.float64).ravel()
    if sigma_cal.shape != y.shape:
        raise ValueError("difficulty_cal must have one value per calibration sample")
    if not np.all(np.isfinite(sigma_cal)):
        raise ValueError("difficulties must be finite")
    if not floor_fraction > 0:
        raise ValueError(f"floor_fraction must be positive; got {floor_fraction}")
    positive = sigma_cal[sigma_cal > 0]
    floor = None
    if positive.size == 0:
        sigma_cal = np.ones_like(sigma_cal)
    else:
        median = float(np.median(np.maximum(sigma_cal, 0.0)))
        floor = floor_fraction * (median if median > 0 else float(np.median(positive)))
        sigma_cal = np.maximum(sigma_cal, 0.0) + floor
    scores = np.sort(np.abs(y - yhat) / sigma_cal)
    rank = _upper_rank(y.size, level)
    q = float("inf") if rank > y.size else float(scores[rank - 1])
    return q, floor


def weighted_conformal_halfwidth(residuals, weights_cal, weight_new, level: float = 0.9):
    """The weighted conformal quantile of Tibshirani, Barber, Candès & Ramdas (2019, NeurIPS,
    "Conformal prediction under covariate shift").

    With calibration scores V_i = ``residuals`` (absolute residuals; their absolute value is
    taken), weights w_i = ``weights_cal`` and the new point's weight w = ``weight_new``, returns
    the level-quantile of the distribution sum_i p_i delta_{V_i} + p_new delta_{+inf},
    p_i = w_i / (sum_j w_j + w), p_new = w / (sum_j w_j + w): the smallest V_(k) (sorted) whose
    cumulative weight reaches level * (sum_j w_j + w), or +inf when none does. With equal
    weights this is exactly ``conformal_halfwidth`` (the ceil((n + 1) * level)-th smallest).
    ``weight_new`` may be a scalar (returns a float) or an array (one half-width per new point).

    Under covariate shift (target x drawn from a different density than the calibration x,
    same y | x) with w(x) = dP_target(x) / dP_cal(x) known, y_new in estimate +- half-width has
    coverage >= ``level`` (for split-conformal residuals from a model that did not train on the
    calibration samples). In practice w is estimated, e.g. as p / (1 - p) from a classifier
    telling target spectra from calibration spectra (times the class-size ratio), and the
    guarantee is then only approximate. This function is the quantile only; it does not
    estimate weights.
    """
    level = _check_level(level)
    v = np.abs(np.asarray(residuals, dtype=np.float64).ravel())
    w = np.asarray(weights_cal, dtype=np.float64).ravel()
    w_new = np.asarray(weight_new, dtype=np.float64)
    if v.size == 0 or w.shape != v.shape:
        raise ValueError("residuals and weights_cal must be non-empty and equally long")
    if not (np.all(np.isfinite(v)) and np.all(np.isfinite(w)) and np.all(np.isfinite(w_new))):
        raise ValueError("residuals and weights must be finite")
    if np.any(w < 0) or np.any(w_new < 0):
        raise ValueError("weights must be non-negative")
    order = np.argsort(v, kind="stable")
    v, cumulative = v[order], np.cumsum(w[order])
    threshold = level * (cumulative[-1] + w_new)
    if np.any(threshold <= 0):
        raise ValueError("the weights must not all be zero")
    index = np.searchsorted(cumulative, np.atleast_1d(threshold), side="left")
    halfwidths = np.where(index < v.size, v[np.minimum(index, v.size - 1)], np.inf)
    return float(halfwidths[0]) if w_new.ndim == 0 else halfwidths.reshape(w_new.shape)


class ShiftWeights:
    """Estimated density ratios w(x) = dP_target(x) / dP_cal(x) between a site's calibration
    spectra and its target spectra (spectra to be estimated, unlabelled: no SOC value is used),
    for ``weighted_conformal_halfwidth``.

    A probabilistic classifier tells target from calibration spectra (Tibshirani et al. 2019,
    section 3.2): a PCA of both sets together (``n_components`` scores, standardised), their
    squares and products, then an L2 logistic regression with balanced class weights, so
    p / (1 - p) estimates the density ratio itself. The quadratic terms matter: the log ratio of
    a wide calibration cloud (Kennard-Stone's extremes) to a compact target cloud is quadratic
    in the scores, which a linear classifier cannot express. p is clipped to [``clip``,
    1 - ``clip``] (weights between clip / (1 - clip) and (1 - clip) / clip) so one spectrum
    cannot carry the whole quantile. The calibration spectra's own weights come
    from the classifier they helped fit (in-sample), and the weights are estimates: the
    coverage guarantee of weighted conformal then holds only approximately. Deterministic
    (lbfgs, no random state).
    """

    def __init__(self, pipeline, clip: float = 0.02):
        self.pipeline = pipeline
        self.clip = float(clip)

    @classmethod
    def fit(cls, X_cal, X_target, n_components: int = 5, clip: float = 0.02) -> ShiftWeights:
        from sklearn.decomposition import PCA
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import PolynomialFeatures, StandardScaler

        X_cal = np.asarray(X_cal, dtype=np.float64)
        X_target = np.asarray(X_target, dtype=np.float64)
        if len(X_cal) < 2 or len(X_target) < 2:
            raise ValueError("shift weights need at least 2 calibration and 2 target spectra")
        X = np.vstack([X_cal, X_target])
        labels = np.r_[np.zeros(len(X_cal)), np.ones(len(X_target))]
        components = max(1, min(int(n_components), X.shape[0] - 1, X.shape[1]))
        pipeline = make_pipeline(PCA(components, svd_solver="full"), StandardScaler(),
                                 PolynomialFeatures(2, include_bias=False), StandardScaler(),
                                 LogisticRegression(class_weight="balanced", max_iter=2000))
        pipeline.fit(X, labels)
        return cls(pipeline, clip)

    def __call__(self, X) -> np.ndarray:
        p = self.pipeline.predict_proba(np.asarray(X, dtype=np.float64))[:, 1]
        p = np.clip(p, self.clip, 1.0 - self.clip)
        return p / (1.0 - p)


def clip_interval(lower, upper, minimum: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Clip both bounds at ``minimum`` (default 0): SOC content (%) cannot be negative.

    lower -> max(lower, minimum), upper -> max(upper, minimum). Since the true value is at least
    ``minimum``, clipping never removes it from an interval that contained it, so coverage is
    unchanged and widths can only shrink.
    """
    return (np.maximum(np.asarray(lower, dtype=np.float64), minimum),
            np.maximum(np.asarray(upper, dtype=np.float64), minimum))


def domain_difficulty(domain: ApplicabilityDomain, spectra) -> np.ndarray:
    """A difficulty known without the label: sigma(x) = sqrt(1 + T2(x) / T2_limit + Q(x) /
    Q_limit) in a model's applicability domain (``ApplicabilityDomain``).

    1 at the centre of the training spectra, about sqrt(3) at the domain's limits, growing
    beyond them; the 1 keeps interior spectra from getting a zero width. Used as the sigma of
    the normalised conformal scores (``normalized_halfwidths``, ``cv_plus_interval``).
    """
    t2, q = domain.statistics(spectra)
    t2_limit = domain.t2_limit if domain.t2_limit > 0 else 1.0
    q_limit = domain.q_limit if domain.q_limit > 0 else 1.0
    return np.sqrt(1.0 + t2 / t2_limit + q / q_limit)


#: What the normalised score divides by (``evaluate.difficulty``): the domain distance, the
#: estimated SOC level, or their product.
DIFFICULTIES = ("domain", "level", "domain_level")


def level_offset(calibration_estimates) -> float:
    """The offset of the ``level`` difficulty: the median of the calibration estimates clipped
    at 0 (1.0 when that median is not positive)."""
    median = float(np.median(np.maximum(np.asarray(calibration_estimates, np.float64), 0.0)))
    return median if median > 0 else 1.0


def spectrum_difficulty(kind: str, domain_sigma, estimate, offset: float) -> np.ndarray:
    """The difficulty sigma of the normalised score for each spectrum, known without its label.

    ``domain``: ``domain_sigma`` (``domain_difficulty``); ``level``: max(estimate, 0) + offset
    (SOC errors grow with the SOC level); ``domain_level``: their product. ``offset``:
    ``level_offset`` of the calibration estimates (so a spectrum estimated at the calibration
    median has level 2 x offset, one estimated at 0 has level 1 x offset).
    """
    if kind not in DIFFICULTIES:
        raise ValueError(f"unknown difficulty {kind!r}; use one of {DIFFICULTIES}")
    domain_sigma = np.asarray(domain_sigma, dtype=np.float64)
    if kind == "domain":
        return domain_sigma
    level = np.maximum(np.asarray(estimate, dtype=np.float64), 0.0) + float(offset)
    return level if kind == "level" else domain_sigma * level


@dataclass
class ApplicabilityDomain:
    """PCA-based T2 / Q applicability domain, stored as plain arrays (no pickles)."""

    mean: np.ndarray
    components: np.ndarray  # (n_components, n_bands)
    variances: np.ndarray  # per component
    t2_limit: float
    q_limit: float

    @classmethod
    def fit(cls, spectra, n_components: int = 5, quantile: float = 0.99) -> ApplicabilityDomain:
        X = np.asarray(spectra, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] < 3:
            raise ValueError("the applicability domain needs at least 3 training spectra")
        n_components = int(min(n_components, X.shape[0] - 1, X.shape[1]))
        mean = X.mean(axis=0)
        _, singular, vt = np.linalg.svd(X - mean, full_matrices=False)
        components = vt[:n_components]
        variances = singular[:n_components] ** 2 / (X.shape[0] - 1)
        variances = np.where(variances > 0, variances, np.finfo(float).tiny)
        domain = cls(mean, components, variances, np.inf, np.inf)
        t2, q = domain.statistics(X)
        domain.t2_limit = float(np.quantile(t2, quantile))
        domain.q_limit = float(np.quantile(q, quantile))
        return domain

    def statistics(self, spectra) -> tuple[np.ndarray, np.ndarray]:
        X = np.atleast_2d(np.asarray(spectra, dtype=np.float64)) - self.mean
        scores = X @ self.components.T
        t2 = np.sum(scores**2 / self.variances, axis=1)
        residual = X - scores @ self.components
        q = np.sum(residual**2, axis=1)
        return t2, q

    def in_domain(self, spectra) -> np.ndarray:
        t2, q = self.statistics(spectra)
        return (t2 <= self.t2_limit) & (q <= self.q_limit)

    def to_dict(self) -> dict:
        return {
            "mean": self.mean.tolist(),
            "components": self.components.tolist(),
            "variances": self.variances.tolist(),
            "t2_limit": self.t2_limit,
            "q_limit": self.q_limit,
        }

    @classmethod
    def from_dict(cls, data: dict) -> ApplicabilityDomain:
        return cls(
            np.asarray(data["mean"], dtype=np.float64),
            np.asarray(data["components"], dtype=np.float64),
            np.asarray(data["variances"], dtype=np.float64),
            float(data["t2_limit"]),
            float(data["q_limit"]),
        )
