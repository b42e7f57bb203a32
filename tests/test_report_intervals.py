"""The report's sentence on how one site's validation interval varies over validation draws."""

from __future__ import annotations

import pandas as pd

from localsoc.pipelines.report.nodes import validation_spread_sentence
from localsoc.uncertainty import split_conformal_coverage_law


def _metrics(rows):
    return pd.DataFrame(rows, columns=["site", "method", "interval", "n_validation",
                                       "interval_level"])


def test_one_clause_per_validation_count_and_none_for_the_fallback():
    metrics = _metrics([
        ("a_site", "Local", "validation", 20, 0.9), ("a_site", "PLSR Local", "validation", 20, 0.9),
        ("b_site", "Local", "validation", 40, 0.9), ("c_site", "Local", "validation", 20, 0.9),
        ("d_site", "Local", "cv_plus", 5, 0.9),  # too few validation samples: CV+ served
    ])
    sentence = validation_spread_sentence(metrics)
    twenty, forty = (split_conformal_coverage_law(m, 0.9).sentence() for m in (20, 40))
    assert sentence == f"; a_site, c_site: {twenty}; b_site: {forty}"
    assert "d_site" not in sentence and "Beta(19, 2)" in twenty and "Beta(37, 4)" in forty


def test_no_sentence_without_a_validation_interval_or_its_columns():
    assert validation_spread_sentence(_metrics([("a_site", "Local", "cv_plus", 0, 0.9)])) == ""
    assert validation_spread_sentence(pd.DataFrame({"site": ["a_site"]})) == ""
