"""scikit-learn's estimator checks on the spectral transformers.

Each check of ``estimator_checks_generator`` (the same list ``parametrize_with_checks`` runs) is
a test. Checks that cannot pass by design are listed with the reason and must fail with the
transformer's own error (so a check that starts passing, or fails for another reason, shows up).
They are asserted with ``pytest.raises`` rather than run as xfails, because pytest's formatting
of each xfail traceback costs a third of a second.
"""

import numpy as np
import pytest
from sklearn.utils.estimator_checks import estimator_checks_generator

from localsoc.data.schema import Grid
from localsoc.spectra import (
    Absorbance,
    Detrend,
    MultiplicativeScatterCorrection,
    Resample,
    SavitzkyGolay,
    StandardNormalVariate,
)

_ZERO_REFLECTANCE = (
    "for positive_only estimators the check shifts X so that its minimum is exactly 0, and the "
    "default Absorbance rejects reflectance 0 by design (log(1/0) is undefined); "
    "Absorbance(clip_zero=True), identical otherwise, passes the whole suite"
)
_ABSORBANCE_ZERO_CHECKS = (
    "check_dict_unchanged",
    "check_dont_overwrite_parameters",
    "check_dtype_object",
    "check_estimators_dtypes",
    "check_estimators_fit_returns_self",
    "check_estimators_nan_inf",
    "check_estimators_overwrite_params",
    "check_estimators_pickle",
    "check_f_contiguous_array_estimator",
    "check_fit2d_1feature",
    "check_fit2d_1sample",
    "check_fit2d_predict1d",
    "check_fit_check_is_fitted",
    "check_fit_idempotent",
    "check_fit_score_takes_y",
    "check_methods_sample_order_invariance",
    "check_methods_subset_invariance",
    "check_n_features_in",
    "check_n_features_in_after_fitting",
    "check_pipeline_consistency",
    "check_readonly_memmap_input",
    "check_transformer_data_not_an_array",
    "check_transformer_general",
    "check_transformer_preserve_dtypes",
)
_FIXED_SOURCE_GRID = (
    "Resample is bound to the wavelengths given at construction (one per column); the check "
    "fits on data with 1-10 arbitrary columns, which is rejected with a clear error. The same "
    "properties are tested on spectral data in test_resample.test_estimator_contract_on_spectral_data"
)
_RESAMPLE_CHECKS = (
    "check_dict_unchanged",
    "check_dont_overwrite_parameters",
    "check_dtype_object",
    "check_estimators_dtypes",
    "check_estimators_fit_returns_self",
    "check_estimators_overwrite_params",
    "check_estimators_pickle",
    "check_f_contiguous_array_estimator",
    "check_fit2d_1feature",
    "check_fit2d_1sample",
    "check_fit2d_predict1d",
    "check_fit_check_is_fitted",
    "check_fit_idempotent",
    "check_fit_score_takes_y",
    "check_methods_sample_order_invariance",
    "check_methods_subset_invariance",
    "check_n_features_in",
    "check_n_features_in_after_fitting",
    "check_pipeline_consistency",
    "check_positive_only_tag_during_fit",
    "check_readonly_memmap_input",
    "check_transformer_data_not_an_array",
    "check_transformer_general",
    "check_transformer_preserve_dtypes",
)


def _expected_failure(estimator) -> tuple[dict[str, str], str]:
    """({check name: reason}, a fragment of the transformer's own error message)."""
    if isinstance(estimator, Absorbance) and not estimator.clip_zero:
        return dict.fromkeys(_ABSORBANCE_ZERO_CHECKS, _ZERO_REFLECTANCE), "must be a fraction"
    if isinstance(estimator, Resample):
        return dict.fromkeys(_RESAMPLE_CHECKS, _FIXED_SOURCE_GRID), "wavelengths but X has"
    if isinstance(estimator, StandardNormalVariate):
        reason = (
            "the check casts 3 * uniform(0, 1) data to integers, which makes one 5-band row "
            "constant; SNV rejects a flat spectrum by design (its s.d. is 0)"
        )
        return {"check_estimators_dtypes": reason}, "flat spectrum"
    if isinstance(estimator, SavitzkyGolay):
        reason = "the check fits on 2 columns; a window of 3 bands needs at least 3 by design"
        return {"check_fit_idempotent": reason}, "needs at least window=3 bands"
    if isinstance(estimator, MultiplicativeScatterCorrection):
        reason = ("the checks' random rows are not spectra of one kind: some fit the mean "
                  "spectrum with a slope <= 0, or their mean is flat (two-band data), and MSC "
                  "refuses both by design (its error names the rows)")
        return dict.fromkeys(_MSC_CHECKS, reason), "msc "
    return {}, ""


_MSC_CHECKS = (
    "check_fit_score_takes_y", "check_estimators_dtypes", "check_dtype_object",
    "check_pipeline_consistency", "check_estimators_pickle", "check_f_contiguous_array_estimator",
    "check_transformer_data_not_an_array", "check_transformer_general",
    "check_transformer_preserve_dtypes", "check_methods_sample_order_invariance",
    "check_methods_subset_invariance", "check_dict_unchanged", "check_fit_idempotent",
)


ESTIMATORS = {
    "Absorbance": Absorbance(),
    "Absorbance-clip_zero": Absorbance(clip_zero=True),
    "StandardNormalVariate": StandardNormalVariate(),
    "Resample": Resample(np.arange(350.0, 2501.0), Grid()),
    "SavitzkyGolay": SavitzkyGolay(window=3, polyorder=1, deriv=1),
    "Detrend": Detrend(order=1),
    "MultiplicativeScatterCorrection": MultiplicativeScatterCorrection(),
}


def _check_name(check) -> str:
    keywords = ",".join(f"{key}={value}" for key, value in check.keywords.items())
    return check.func.__name__ + (f"({keywords})" if keywords else "")


def _cases():
    for label, estimator in ESTIMATORS.items():
        for instance, check in estimator_checks_generator(estimator, legacy=True):
            name = _check_name(check)
            expected, fragment = _expected_failure(instance)
            reason = expected.get(check.func.__name__)
            yield pytest.param(
                instance, check, reason, fragment if reason else None, id=f"{label}-{name}"
            )


def _messages(error: BaseException) -> str:
    """The error's message and those of the errors it was raised from."""
    texts = []
    while error is not None:
        texts.append(str(error))
        error = error.__cause__ or error.__context__
    return " | ".join(texts)


@pytest.mark.parametrize(("estimator", "check", "reason", "fragment"), list(_cases()))
def test_sklearn_estimator_checks(estimator, check, reason, fragment):
    try:
        check(estimator)
    except Exception as error:  # noqa: BLE001 - the checks raise several types
        if type(error).__name__ == "SkipTest":
            pytest.skip(str(error))
        if reason is None:
            raise
        assert fragment in _messages(error), f"expected to fail because {reason}; got {error!r}"
    else:
        assert reason is None, f"expected to fail ({reason}) but passed: update the list"


def test_expected_failures_name_real_checks():
    names = {
        check.func.__name__
        for estimator in ESTIMATORS.values()
        for _, check in estimator_checks_generator(estimator, legacy=True)
    }
    for estimator in ESTIMATORS.values():
        assert set(_expected_failure(estimator)[0]) <= names
