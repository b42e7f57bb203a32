"""The method registry: every model family and every method of the study, declared once.

Open this file to **add a model or a method**. A *family* is a kind of fitted model (1D-CNN fold
ensemble, PLSR, memory-based learning); its own module (``localsoc/families/<name>.py``) says how
one is trained on a site's data, stored, loaded and asked for estimates with a spread. A *method*
is one row of the study table: a label, the key its model is stored under, the stage that trains
it, the data it learns from and its family. The train, transfer, mbl, evaluate, report, plots and
package stages iterate over :func:`methods`; nothing else lists them.

Adding a family = one :class:`Family` entry in ``FAMILIES`` + its module; adding a method of an
existing family = one :class:`Method` entry in ``METHODS``. Tests may add both for a while with
:func:`extended`.

The interface a family module provides (duck-typed; see ``localsoc/families/plsr.py`` for the
smallest one):

``STORE`` (servable or stored families)
    an object with ``model_format`` (the name in the serving bundle), ``marker`` (the file that
    marks a saved model in a folder), ``owns(model)``, ``save(model, folder)``, ``load(folder)``.
``train_site_model(X, y, ids, folds, seed, params, label, dataset, n_local) -> (model, trials
or None)``
    for families with methods of the ``train_sites`` stage (``params``: ``params:train``;
    ``n_local``: how many of the rows, the last ones, are the site's calibration samples).
``serving_predictor(model)``
    an object whose ``predict(X, return_std=True)`` gives (estimate, spread) for served spectra
    (may be the model itself).
``refit_folds(model, fold_data, params, seed, base=None, base_data=None)``
    for families with ``nested`` methods: refit the model's recipe (architecture and training
    settings, or its CV choice of components) on each outer fold's own training data
    ``fold_data`` = [(X_train, y_train, [X_to_predict, ...]), ...] and return, per fold,
    (the predictions of those arrays, a dict of what the refit chose); ``base`` is the library
    model of a transfer method, ``base_data`` each outer fold's training locals (X, y) (the
    last rows of that fold's training data).

Models answer ``predict(X, return_std=True)`` with the estimate and the spread over their fold
models (0 for a single model) and carry ``oof_predictions_`` and ``folds`` or ``sample_ids``
for their training rows.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from localsoc.study import scope_key

#: The stages that produce models or estimates, and the collection (Kedro dataset) each fills.
STAGES: dict[str, str | None] = {
    "train_library": "library",   # library_models
    "train_sites": "site",        # site_models
    "transfer": "transfer",       # transfer_models
    "mbl": None,                  # mbl_estimates: estimates only, no stored models
    "stack": None,                # made by the evaluate stage from the other methods' estimates
}


#: How the ``nested`` stage re-estimates a method (``Method.nested``).
NESTED: tuple[str | None, ...] = (None, "rslocal", "refit")


@dataclass(frozen=True)
class Family:
    """A kind of fitted model.

    ``module`` is the family's own module (dotted path, imported when first needed) or an
    object with the same attributes. ``servable``: the package stage may serve its models (MBL
    is not: it needs the whole library at prediction time). ``simplicity``: lower is simpler
    (PLSR before a CNN), for rules that prefer the simpler of two equal models.
    """

    name: str
    description: str
    module: str | Any
    servable: bool
    simplicity: int

    def implementation(self) -> ModuleType | Any:
        if isinstance(self.module, str):
            return importlib.import_module(self.module)
        return self.module

    @property
    def store(self) -> Any:
        return self.implementation().STORE


@dataclass(frozen=True)
class Method:
    """One row of the study table.

    ``key``: where its model is stored, a template of ``{site}``, ``{country}`` and
    ``{library}`` (the library model key of the method's scope: ``global``, ``country_CN``).
    ``stage``: one of :data:`STAGES`. ``data``: what it learns from, a data-set name of
    ``localsoc.study.data`` (``n``, ``k+n:<scope>``, ``library:<scope>``,
    ``library:<scope>+n``). ``base``: the library scope whose model a transfer method starts
    from. ``reference``: the method dRMSE is measured against. ``paper_drmse``: the mean dRMSE
    Shen et al. (2022) report for it, printed beside ours.

    ``nested``: how the ``nested`` stage re-estimates the method out of fold when its training
    data or settings were chosen with the calibration labels (see ``localsoc.study.nested``):
    ``rslocal`` (RS-LOCAL rerun on each outer fold's training locals, then the family's
    ``refit_folds`` on that selection + those locals), ``refit`` (the family's ``refit_folds``
    on each outer fold's training locals, redoing its label-driven choices there: PLSR
    components, a transfer's base fold), or None (the model's own fold models already predict
    each calibration sample out of fold with no choice made on their labels, or the model never
    saw the calibration samples).
    """

    label: str
    key: str
    stage: str
    data: str
    family: str
    base: str | None = None
    reference: bool = False
    paper_drmse: float | None = None
    nested: str | None = None

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"method {self.label!r}: unknown stage {self.stage!r}; stages are "
                             f"{sorted(STAGES)}")
        if self.nested not in NESTED:
            raise ValueError(f"method {self.label!r}: unknown nested procedure {self.nested!r}; "
                             f"use one of {NESTED}")

    @property
    def scope(self) -> str | None:
        """The library scope the method's data or base model come from (None: local only)."""
        if self.base is not None:
            return self.base
        if self.data == "n":
            return None
        return self.data.partition(":")[2].removesuffix("+n")

    @property
    def collection(self) -> str | None:
        return STAGES[self.stage]

    def model_key(self, site: str, country: str | None) -> str:
        scope = self.scope
        library = scope_key(scope, country) if scope is not None else ""
        return self.key.format(site=site, country=country, library=library)


FAMILIES: list[Family] = [
    Family("cnn", "1D-CNN fold ensemble (Keras)", "localsoc.families.cnn", servable=True,
           simplicity=2),
    Family("plsr", "partial least squares regression", "localsoc.families.plsr", servable=True,
           simplicity=1),
    Family("mbl", "memory-based learning (local PLS per spectrum)", "localsoc.families.mbl",
           servable=False, simplicity=3),
    # a linear model like PLSR, served the same way: as simple as PLSR
    Family("plsr_spiked", "PLSR on library + extra-weighted local samples (spiking)",
           "localsoc.families.spiked_plsr", servable=True, simplicity=1),
    # a kernel model on PLS scores: less simple than a linear model, simpler than a CNN
    # search (a handful of hyperparameters by marginal likelihood, no architecture choice)
    Family("gpr", "Gaussian process regression on PLS scores", "localsoc.families.gpr",
           servable=True, simplicity=2),
    # combines several models (every servable one with a positive weight): the least simple
    Family("stack", "convex combination of the servable models (stacking)",
           "localsoc.families.stack", servable=True, simplicity=4),
]

METHODS: list[Method] = [
    Method("Local", "{site}/local", "train_sites", "n", "cnn", reference=True),
    Method("Global", "{library}", "train_library", "library:global", "cnn"),
    Method("Country", "{library}", "train_library", "library:country", "cnn"),
    Method("DTL-Ig", "{site}/dtl_ig", "train_sites", "k+n:global", "cnn", paper_drmse=25.8,
           nested="rslocal"),
    Method("DTL-Ic", "{site}/dtl_ic", "train_sites", "k+n:country", "cnn", nested="rslocal"),
    Method("DTL-Rg", "{site}/dtl_rg", "transfer", "n", "cnn", base="global", nested="refit"),
    Method("DTL-Rc", "{site}/dtl_rc", "transfer", "n", "cnn", base="country",
           nested="refit"),
    Method("DTL-IRg", "{site}/dtl_irg", "transfer", "k+n:global", "cnn", base="global",
           nested="rslocal"),
    Method("DTL-IRc", "{site}/dtl_irc", "transfer", "k+n:country", "cnn", base="country",
           nested="rslocal"),
    Method("PLSR Local", "{site}/plsr_local", "train_sites", "n", "plsr", nested="refit"),
    Method("RS-LOCAL+PLSR g", "{site}/plsr_rslocal_g", "train_sites", "k+n:global", "plsr",
           nested="rslocal"),
    Method("RS-LOCAL+PLSR c", "{site}/plsr_rslocal_c", "train_sites", "k+n:country", "plsr",
           nested="rslocal"),
    Method("RS-LOCAL+PLSR g w", "{site}/plsr_spiked_g", "train_sites", "k+n:global",
           "plsr_spiked", nested="rslocal"),
    Method("RS-LOCAL+PLSR c w", "{site}/plsr_spiked_c", "train_sites", "k+n:country",
           "plsr_spiked", nested="rslocal"),
    Method("GPR Local", "{site}/gpr_local", "train_sites", "n", "gpr", nested="refit"),
    Method("Stack", "{site}/stack", "stack", "n", "stack"),
    Method("MBL g", "{site}/mbl_g", "mbl", "library:global", "mbl"),
    Method("MBL+spiking g", "{site}/mbl_spike_g", "mbl", "library:global+n", "mbl"),
    Method("MBL c", "{site}/mbl_c", "mbl", "library:country", "mbl"),
    Method("MBL+spiking c", "{site}/mbl_spike_c", "mbl", "library:country+n", "mbl"),
]


def methods(stage: str | None = None, family: str | None = None) -> list[Method]:
    """The registered methods in study-table order, optionally of one stage or family."""
    return [m for m in METHODS if (stage is None or m.stage == stage)
            and (family is None or m.family == family)]


def method(label: str) -> Method:
    for candidate in METHODS:
        if candidate.label == label:
            return candidate
    raise KeyError(f"no method {label!r}; registered: {[m.label for m in METHODS]}")


def method_order() -> list[str]:
    return [m.label for m in METHODS]


def reference_method() -> Method:
    """The method every dRMSE is measured against (Local)."""
    found = [m for m in METHODS if m.reference]
    if len(found) != 1:
        raise ValueError(f"exactly one method must be the reference; found {len(found)}")
    return found[0]


def family(name: str) -> Family:
    for candidate in FAMILIES:
        if candidate.name == name:
            return candidate
    raise KeyError(f"no model family {name!r}; registered: {[f.name for f in FAMILIES]}")


def servable_families() -> list[str]:
    return [f.name for f in FAMILIES if f.servable]


def stored_families() -> list[Family]:
    """The families whose models are stored on disk (they have a ``STORE``)."""
    return [f for f in FAMILIES if getattr(f.implementation(), "STORE", None) is not None]


def family_of_model(model: Any) -> Family:
    """The stored family whose store owns this fitted model."""
    for candidate in stored_families():
        if candidate.store.owns(model):
            return candidate
    raise TypeError(
        f"no registered model family stores a {type(model).__name__}; families with a store: "
        f"{[f.name for f in stored_families()]}"
    )


def family_of_format(model_format: str) -> Family:
    """The stored family whose models are bundled as ``model_format``."""
    for candidate in stored_families():
        if candidate.store.model_format == model_format:
            return candidate
    raise KeyError(
        f"unknown model format {model_format!r}; known: "
        f"{[f.store.model_format for f in stored_families()]}"
    )


@contextlib.contextmanager
def extended(families: Sequence[Family] = (), methods: Sequence[Method] = ()) -> Iterator[None]:
    """Register extra families and methods for the duration of a ``with`` block (tests)."""
    added_families, added_methods = list(families), list(methods)
    FAMILIES.extend(added_families)
    METHODS.extend(added_methods)
    try:
        yield
    finally:
        for item in added_methods:
            METHODS.remove(item)
        for item in added_families:
            FAMILIES.remove(item)
