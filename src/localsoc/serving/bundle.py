"""The serving bundle: every site's winning model, with what it needs to serve, as files and data.

One bundle holds one entry per site. An entry is the winner's fitted model, saved by its family's
store (``localsoc.methods``: a 1D-CNN fold ensemble in the layout of
``localsoc.models.fold_files``, a PLSR model as ``linear_model.json``), plus, as plain data in
``bundle.json`` (no pickles):

- the wavelength grid (nm) and the fitted preprocessing chain (``localsoc.spectra.steps``: each
  step's name, parameters and fitted state, e.g. MSC's reference spectrum);
- the interval: its method (``normalised``: half-width q * sigma(x), sigma the spectrum's
  domain distance; ``plain``: one conformal half-width), level, and the nested out-of-fold
  calibration residuals (signed, observed - estimated; the field summary of
  ``localsoc.field`` uses their mean) and difficulties it came from (checked when read);
- the applicability domain (PCA mean, components, variances, T2 and Q limits);
- the method, the model key, what it was trained on, calibration and test metrics;
- ``data``: the number of calibration and test samples and the validated rows of the site and
  of each library; ``selection``: the winner rule, the candidates and the nested calibration
  RMSE's standard error (both for the model card, ``localsoc.serving.card``; older bundles
  lack them);
- the serving limits, and the data and code versions of the run that made it.

``bundle.json`` lists the SHA-256 of every model file; ``read_bundle`` verifies them (and, when
given, the hash of ``bundle.json`` itself) before anything is loaded. ``read_stored_bundle`` is
the one way a store model is read (by the service, ``localsoc predict`` and the Kedro dataset):
it requires the hash of ``bundle.json``, pinned outside the store (``$LOCALSOC_BUNDLE_SHA256``,
and the store version ``pinned_version`` that the package stage gives the model, whose tag is
in ``data/06_models/bento_tag.txt``) and recorded in the store's metadata; they must agree. This
module knows nothing about Kedro and does not import BentoML: it reads and writes a directory.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from localsoc.spectra import units

BUNDLE_FORMAT = "localsoc.bundle/1"
MANIFEST_FILE = "bundle.json"
#: The environment variable that pins the SHA-256 of the served ``bundle.json``.
PIN_VARIABLE = "LOCALSOC_BUNDLE_SHA256"
#: A store version that pins its bundle: this prefix and the first hex digits of the SHA-256 of
#: ``bundle.json`` (BentoML versions hold at most 63 characters).
PIN_PREFIX = "sha256-"
PIN_HEX_DIGITS = 48

#: What a served request may hold, unless the package parameters say otherwise.
DEFAULT_SERVING: dict[str, Any] = {
    "max_spectra_per_request": 1000,
    "max_body_bytes": 16 * 1024 * 1024,
    "reflectance_min_exclusive": 0.0,
    "reflectance_max": 1.0,
    "percent_reflectance_above": units.PERCENT_REFLECTANCE_ABOVE,
    "absorbance_max": units.ABSORBANCE_MAX,
}

#: Keys every site entry of the manifest must have.
SITE_KEYS = (
    "site", "method", "model_key", "family", "model_format", "model_dir", "wavelengths_nm",
    "preprocessing", "interval", "domain", "test_metrics",
)


class BundleError(ValueError):
    """A bundle that cannot be served: malformed, incomplete, or not what was packaged."""


class BundleIntegrityError(BundleError):
    """A bundle file whose SHA-256 differs from the one recorded when it was packaged."""


@dataclass
class ServingBundle:
    """A bundle in memory: the manifest (plain data) and the fitted model of each site.

    ``manifest["sites"][site]`` describes the site (see the module notes); ``models[site]`` is a
    ``FoldEnsemble`` or a ``LinearModel``. ``manifest["files"]`` (path -> SHA-256) is filled by
    :func:`write_bundle` and checked by :func:`read_bundle`.
    """

    manifest: dict[str, Any]
    models: dict[str, Any] = field(default_factory=dict)

    @property
    def sites(self) -> list[str]:
        return sorted(self.manifest["sites"])

    def site(self, name: str) -> dict[str, Any]:
        return self.manifest["sites"][name]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def site_directory(site: str) -> str:
    """The bundle-relative folder of a site's model (site ids become safe folder names)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(site)) or "site"
    digest = hashlib.sha256(str(site).encode()).hexdigest()[:8]
    return f"sites/{safe}-{digest}"


def model_format(model: Any) -> str:
    """The bundle name of a model's format: that of the registered family that stores it."""
    from localsoc.methods import family_of_model

    try:
        family = family_of_model(model)
    except TypeError as error:
        raise BundleError(f"cannot bundle this model: {error}") from None
    if not family.servable:
        raise BundleError(f"cannot bundle a {family.name} model: that family is not servable")
    return family.store.model_format


def _store_of(model_format_name: str) -> Any:
    from localsoc.methods import family_of_format

    try:
        return family_of_format(model_format_name).store
    except KeyError as error:
        raise BundleError(str(error.args[0])) from None


def check_manifest(manifest: Mapping[str, Any]) -> None:
    """Raise ``BundleError`` naming what is missing or inconsistent in a manifest."""
    if manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(
            f"bundle format {manifest.get('format')!r} is not {BUNDLE_FORMAT!r}; re-package "
            "with this version of localsoc (kedro run --pipelines package)"
        )
    sites = manifest.get("sites")
    if not isinstance(sites, Mapping) or not sites:
        raise BundleError("the bundle has no sites; the package stage needs study winners")
    for name, entry in sites.items():
        missing = [key for key in SITE_KEYS if key not in entry]
        if missing:
            raise BundleError(f"bundle site {name!r} lacks {missing}")
        try:
            _store_of(entry["model_format"])
        except BundleError as error:
            raise BundleError(f"bundle site {name!r}: {error}") from None
        wavelengths = np.asarray(entry["wavelengths_nm"], dtype=np.float64)
        if wavelengths.ndim != 1 or wavelengths.size < 2 or np.any(np.diff(wavelengths) <= 0):
            raise BundleError(
                f"bundle site {name!r}: wavelengths_nm must be >= 2 increasing values"
            )
        interval = entry["interval"]
        if not 0 < float(interval["level"]) < 1:
            raise BundleError(f"bundle site {name!r}: interval level must be in (0, 1)")
    serving = manifest.get("serving", {})
    unknown = sorted(set(serving) - set(DEFAULT_SERVING))
    if unknown:
        raise BundleError(
            f"unknown serving setting(s) {unknown}; known ones are {sorted(DEFAULT_SERVING)}"
        )


def _save_model(model: Any, folder: Path) -> None:
    _store_of(model_format(model)).save(model, folder)


def _load_model(entry: Mapping[str, Any], folder: Path) -> Any:
    return _store_of(entry["model_format"]).load(folder)


def write_bundle(bundle: ServingBundle, directory: str | Path) -> str:
    """Write the models and ``bundle.json`` (with every file's SHA-256) into ``directory``.

    ``directory`` may exist (the BentoML store creates it) but must not hold a bundle yet.
    Model archives get fixed times (``localsoc.datasets.stable_archives``) before they are
    hashed, so the same models give the same bytes. Returns the SHA-256 of ``bundle.json``.
    """
    from localsoc.datasets.stable_archives import fix_archive_times

    directory = Path(directory)
    manifest = json.loads(json.dumps(bundle.manifest))  # a plain-data copy; fails on non-JSON
    manifest.pop("files", None)
    check_manifest(manifest)
    if (directory / MANIFEST_FILE).exists():
        raise BundleError(f"{directory} already holds a bundle; write into an empty directory")
    if set(bundle.models) != set(manifest["sites"]):
        raise BundleError(
            f"bundle models {sorted(bundle.models)} and manifest sites "
            f"{sorted(manifest['sites'])} differ; give one model per site"
        )
    files: dict[str, str] = {}
    for site, entry in manifest["sites"].items():
        if entry["model_format"] != model_format(bundle.models[site]):
            raise BundleError(f"bundle site {site!r}: model does not match its model_format")
        folder = directory / entry["model_dir"]
        _save_model(bundle.models[site], folder)
        fix_archive_times(folder)
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            files[path.relative_to(directory).as_posix()] = sha256_file(path)
    manifest["files"] = files
    text = json.dumps(manifest, indent=1, allow_nan=False)
    (directory / MANIFEST_FILE).write_text(text)
    return hashlib.sha256(text.encode()).hexdigest()


def verify_bundle(directory: str | Path, manifest_sha256: str | None = None) -> dict[str, Any]:
    """Check ``bundle.json`` (against ``manifest_sha256`` when given) and every file's SHA-256.

    Returns the manifest. Raises ``BundleIntegrityError`` naming the first file that is missing
    or changed since packaging.
    """
    directory = Path(directory)
    path = directory / MANIFEST_FILE
    if not path.is_file():
        raise BundleError(
            f"no {MANIFEST_FILE} in {directory}: not a localsoc bundle (run the package stage)"
        )
    raw = path.read_bytes()
    if manifest_sha256 is not None and hashlib.sha256(raw).hexdigest() != manifest_sha256:
        raise BundleIntegrityError(
            f"{path} changed since it was packaged (SHA-256 differs from the store's record); "
            "re-run the package stage"
        )
    manifest = json.loads(raw)
    check_manifest(manifest)
    files = manifest.get("files")
    if not isinstance(files, Mapping) or not files:
        raise BundleError(f"{path} lists no file hashes; re-run the package stage")
    for relative, expected in sorted(files.items()):
        parts = PurePosixPath(relative).parts
        if PurePosixPath(relative).is_absolute() or ".." in parts:
            raise BundleError(f"bundle file path {relative!r} leaves the bundle directory")
        target = directory / relative
        if not target.is_file():
            raise BundleIntegrityError(f"bundle file {relative} is missing from {directory}")
        if sha256_file(target) != expected:
            raise BundleIntegrityError(
                f"bundle file {relative} changed since it was packaged (SHA-256 differs); "
                "re-run the package stage"
            )
    for site, entry in manifest["sites"].items():
        prefix = entry["model_dir"].rstrip("/") + "/"
        if not any(name.startswith(prefix) for name in files):
            raise BundleError(f"bundle site {site!r}: no hashed files under {prefix}")
    return manifest


def read_bundle(
    directory: str | Path, manifest_sha256: str | None = None, load_models: bool = True
) -> ServingBundle:
    """Verify a bundle directory and load it (models too, unless ``load_models`` is False)."""
    directory = Path(directory)
    manifest = verify_bundle(directory, manifest_sha256)
    models = {}
    if load_models:
        for site, entry in manifest["sites"].items():
            try:
                models[site] = _load_model(entry, directory / entry["model_dir"])
            except (ValueError, KeyError, TypeError, OSError) as error:
                raise BundleError(
                    f"bundle site {site!r}: its {entry['model_format']} model cannot be served: "
                    f"{error}; re-run the package stage"
                ) from None
    return ServingBundle(manifest=manifest, models=models)


def pinned_version(manifest_sha256: str) -> str:
    """The store version of a bundle whose ``bundle.json`` has this SHA-256: ``PIN_PREFIX`` and
    its first ``PIN_HEX_DIGITS`` hex digits, so that the tag (in ``bento_tag.txt``, which DVC
    records) pins the bundle outside the store."""
    return PIN_PREFIX + manifest_sha256[:PIN_HEX_DIGITS]


def expected_digest(stored: Any, environ: Mapping[str, str] | None = None) -> str:
    """The SHA-256 ``bundle.json`` of a store model must have: ``$LOCALSOC_BUNDLE_SHA256`` when
    set, else the store's record (``info.metadata["bundle_sha256"]``); either must agree with
    the digest the model's tag pins (``pinned_version``) and with each other. A
    ``BundleIntegrityError`` says which disagree."""
    environ = os.environ if environ is None else environ
    recorded = (stored.info.metadata or {}).get("bundle_sha256")
    recorded = recorded if isinstance(recorded, str) and len(recorded) == 64 else None
    pinned = environ.get(PIN_VARIABLE, "").strip().lower()
    if pinned and not (len(pinned) == 64 and all(c in "0123456789abcdef" for c in pinned)):
        raise BundleError(f"{PIN_VARIABLE} must be the 64 hex digits of a SHA-256 (bundle.json's,"
                          f" as `localsoc`'s package stage prints it), not {pinned[:80]!r}")
    if pinned and recorded and pinned != recorded:
        raise BundleIntegrityError(
            f"store model {stored.tag}: its record of {MANIFEST_FILE}'s SHA-256 is not the one "
            f"{PIN_VARIABLE} pins; the store was changed, or the pin names another bundle")
    digest = pinned or recorded
    if digest is None:
        raise BundleIntegrityError(
            f"store model {stored.tag} records no bundle_sha256 in its metadata (model.yaml), so "
            f"its {MANIFEST_FILE} cannot be checked; re-run the package stage")
    version = str(getattr(stored.tag, "version", "") or "")
    if version.startswith(PIN_PREFIX) and not digest.startswith(version[len(PIN_PREFIX):]):
        source = PIN_VARIABLE if pinned else "the store's record"
        raise BundleIntegrityError(
            f"store model {stored.tag}: {MANIFEST_FILE}'s SHA-256 in {source} is not the one "
            "its tag pins (data/06_models/bento_tag.txt); the store was changed after "
            "packaging, or the pin names another bundle: re-run the package stage")
    return digest


def read_stored_bundle(stored: Any, load_models: bool = True) -> ServingBundle:
    """Verify and load the bundle of a BentoML store model (anything with ``path``, ``tag`` and
    ``info.metadata``) against the SHA-256 of ``bundle.json`` that ``expected_digest`` gives (the
    pin outside the store, else the store's record checked against the tag's pin). A model
    without either is refused: a changed ``bundle.json``, and any model file it lists, would
    go unnoticed."""
    return read_bundle(stored.path, expected_digest(stored), load_models)


def with_store_times(manifest: dict, metadata: dict) -> None:
    """Put the packaging and training times that the BentoML store keeps in the model's
    metadata (the bundle holds none, so that the same winners give the same bytes) into
    ``manifest`` (in place), where the answers' model identity reads them."""
    if metadata.get("packaged_at") and not manifest.get("packaged_at"):
        manifest["packaged_at"] = metadata["packaged_at"]
    for site, stamp in dict(metadata.get("trained_at") or {}).items():
        entry = manifest["sites"].get(site)
        if entry is not None and stamp and not entry.get("trained_at"):
            entry["trained_at"], entry["trained_at_source"] = stamp, "training"


def interval_halfwidth(entry: Mapping[str, Any]) -> float:
    """The stored conformal half-width, checked against the stored calibration residuals."""
    from localsoc.uncertainty import conformal_halfwidth

    interval = entry["interval"]
    residuals = np.asarray(interval.get("calibration_residuals", []), dtype=np.float64)
    stored = interval.get("halfwidth")
    stored = math.inf if stored is None else float(stored)
    if residuals.size:
        recomputed = conformal_halfwidth(residuals, np.zeros_like(residuals),
                                         float(interval["level"]))
        if not (recomputed == stored or abs(recomputed - stored) <= 1e-9 * max(1.0, stored)):
            raise BundleError(
                f"bundle site {entry['site']!r}: stored interval half-width {stored} disagrees "
                f"with its calibration residuals ({recomputed}); re-run the package stage"
            )
    return stored


#: What the served interval is, per ``interval.method`` of a bundle site.
INTERVAL_DESCRIPTIONS = {
    "validation": (
        "split conformal interval on the site's validation samples (random samples of the "
        "field, never trained on, not used to choose the model): estimate +- the "
        "ceil((m + 1)(1 - alpha))-th smallest of the served model's m absolute validation "
        "residuals (calibration_residuals). Guarantee (Vovk et al. 2005; Lei et al. 2018): "
        "coverage >= the level for a new spectrum exchangeable with the validation samples (a "
        "random sample of the same field), marginally over the validation draw (it needs m >= "
        "9 at 90 %; the study serves CV+ with fewer); lower bound clipped at 0"),
    "cv_plus": (
        "CV+ interval (Barber, Candes, Ramdas & Tibshirani 2021, Ann. Statist. 49(1)): from each "
        "outer-fold model's estimate of the spectrum and the nested out-of-fold calibration "
        "residuals, lower = the floor(alpha (n + 1))-th smallest of {mu_-k(i)(x) - R_i}, upper "
        "= the ceil((1 - alpha)(n + 1))-th smallest of {mu_-k(i)(x) + R_i}; the estimate is the "
        "mean of the outer-fold models (one 'fold' for a model that never saw the calibration "
        "samples: split conformal). Guarantee for exchangeable data: coverage >= 1 - 2 alpha "
        "minus a small term; about the level in practice (measured on test in the study). "
        "Lower bound clipped at 0"),
    "normalised": (
        "normalised-score conformal interval (Lei et al. 2018): estimate +- q * sigma(x), sigma "
        "a difficulty known without the label (see difficulty_description), q the conformal "
        "quantile of |residual| / sigma over the nested out-of-fold calibration residuals; "
        "lower bound clipped at 0. Marginal coverage about the level (measured on test in the "
        "study; no finite-sample guarantee, since the served model is refitted on all "
        "calibration samples)"),
    "plain": (
        "conformal half-width of the nested out-of-fold calibration residuals around the served "
        "estimate; lower bound clipped at 0. Marginal coverage about the level (measured on "
        "test in the study; no finite-sample guarantee)"),
}


#: What sigma(x) of a normalised interval is, per ``interval.difficulty``.
DIFFICULTY_DESCRIPTIONS = {
    "domain": "sigma(x) = d(x) = sqrt(1 + T2/T2_limit + Q/Q_limit) in the model's domain",
    "level": "sigma(x) = max(estimate, 0) + level_offset (errors grow with the SOC level)",
    "domain_level": "sigma(x) = d(x) * (max(estimate, 0) + level_offset), d(x) = sqrt(1 + "
                    "T2/T2_limit + Q/Q_limit) in the model's domain",
}


@dataclass(frozen=True)
class IntervalRule:
    """The served interval of one bundle site (see ``INTERVAL_DESCRIPTIONS``)."""

    method: str
    level: float
    halfwidth: float  # plain, validation: the half-width
    score_quantile: float  # normalised: q
    floor: float  # normalised: added to sigma
    difficulty: str = "domain"  # normalised: what sigma is (DIFFICULTY_DESCRIPTIONS)
    level_offset: float = 1.0  # normalised, level difficulties: the offset
    residuals: tuple = ()  # cv_plus: |nested out-of-fold residual| of each calibration sample
    folds: tuple = ()  # cv_plus: the outer fold of each
    fold_estimates: bool = False  # cv_plus: the served model's fold estimates (else its mean)

    def bounds(self, estimate: np.ndarray, per_fold: np.ndarray | None,
               domain_sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper) of each spectrum, lower clipped at 0. ``per_fold``: the served
        model's fold estimates (K, m) (used by cv_plus when ``fold_estimates``)."""
        from localsoc.uncertainty import clip_interval, cv_plus_interval

        estimate = np.asarray(estimate, dtype=np.float64)
        if self.method == "cv_plus":
            mu = per_fold if self.fold_estimates else estimate[None, :]
            residuals = np.asarray(self.residuals, dtype=np.float64)
            lower, upper = cv_plus_interval(residuals, np.zeros_like(residuals),
                                            np.asarray(self.folds, dtype=np.int64), mu,
                                            self.level)
        else:
            half = self.halfwidths(domain_sigma, estimate)
            lower, upper = estimate - half, estimate + half
        return clip_interval(lower, upper)

    def halfwidths(self, domain_sigma: np.ndarray, estimate: np.ndarray | None = None
                   ) -> np.ndarray:
        """Half-width of each spectrum, from its ``domain_difficulty`` and estimate."""
        from localsoc.uncertainty import spectrum_difficulty

        domain_sigma = np.asarray(domain_sigma, dtype=np.float64)
        if self.method in ("plain", "validation"):
            return np.full(domain_sigma.shape, self.halfwidth)
        sigma = spectrum_difficulty(self.difficulty, domain_sigma,
                                    domain_sigma if estimate is None else estimate,
                                    self.level_offset)
        return self.score_quantile * (np.maximum(sigma, 0.0) + self.floor)


def interval_rule(entry: Mapping[str, Any]) -> IntervalRule:
    """The served interval of a bundle site, its numbers checked against the stored calibration
    residuals and difficulties (a mismatch is a ``BundleError``)."""
    from localsoc.uncertainty import normalized_score_quantile

    interval = entry["interval"]
    halfwidth = interval_halfwidth(entry)
    method = interval.get("method")
    level = float(interval["level"])
    if method not in INTERVAL_DESCRIPTIONS:  # bundles before nested evaluation
        return IntervalRule("plain", level, halfwidth, math.nan, 0.0)
    if method == "cv_plus":
        residuals = np.abs(np.asarray(interval.get("calibration_residuals", []), np.float64))
        folds = np.asarray(interval.get("calibration_folds", []))
        if (residuals.size == 0 or folds.shape != residuals.shape
                or not np.issubdtype(folds.dtype, np.integer) or folds.min() < 0):
            raise BundleError(f"bundle site {entry['site']!r}: a cv_plus interval needs one "
                              "outer fold (an integer >= 0) per calibration residual")
        fold_estimates = bool(interval.get("fold_estimates", False))
        if not fold_estimates and folds.max() != 0:
            raise BundleError(f"bundle site {entry['site']!r}: calibration folds other than 0 "
                              "need the served model's fold estimates (fold_estimates: true)")
        return IntervalRule("cv_plus", level, halfwidth, math.nan, 0.0,
                            residuals=tuple(residuals.tolist()),
                            folds=tuple(int(f) for f in folds), fold_estimates=fold_estimates)
    if method in ("plain", "validation"):
        return IntervalRule(method, level, halfwidth, math.nan, 0.0)
    residuals = np.asarray(interval.get("calibration_residuals", []), dtype=np.float64)
    difficulties = np.asarray(interval.get("calibration_difficulties", []), dtype=np.float64)
    if residuals.size == 0 or difficulties.shape != residuals.shape:
        raise BundleError(f"bundle site {entry['site']!r}: a normalised interval needs one "
                          "calibration difficulty per calibration residual")
    q, floor = normalized_score_quantile(residuals, np.zeros_like(residuals), difficulties,
                                         level)
    stored = interval.get("score_quantile")
    stored = math.inf if stored is None else float(stored)
    if not (q == stored or abs(q - stored) <= 1e-9 * max(1.0, abs(stored))):
        raise BundleError(
            f"bundle site {entry['site']!r}: stored score quantile {stored} disagrees with its "
            f"calibration residuals and difficulties ({q}); re-run the package stage")
    kind = interval.get("difficulty", "domain")
    if kind not in DIFFICULTY_DESCRIPTIONS:
        raise BundleError(f"bundle site {entry['site']!r}: unknown interval difficulty {kind!r}; "
                          f"known: {sorted(DIFFICULTY_DESCRIPTIONS)}")
    offset = interval.get("level_offset")
    if kind != "domain" and not (offset is not None and float(offset) > 0):
        raise BundleError(f"bundle site {entry['site']!r}: a {kind!r} difficulty needs a "
                          "positive level_offset")
    return IntervalRule("normalised", level, halfwidth, q, 0.0 if floor is None else floor,
                        kind, float(offset) if offset is not None else 1.0)
