"""Schemathesis over a running service's ``/predict`` and ``/sites``: generated requests (valid
and invalid by the OpenAPI document) must never get a 5xx, and every reply must be one the
document declares (status, content type and body schema).

``fuzz`` runs a bounded number of cases and collects the failures instead of stopping at the
first, so a run reports how many there were and the largest 4xx body seen. Generated bodies
rarely name a served site with usable spectra, so known-good bodies can be added: their 200
replies are checked the same way.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class FuzzOutcome:
    cases: int = 0
    failures: list[str] = field(default_factory=list)
    largest_4xx_bytes: int = 0
    statuses: Counter = field(default_factory=Counter)

    def __str__(self) -> str:
        return (f"{self.cases} cases, {len(self.failures)} failures, largest 4xx body "
                f"{self.largest_4xx_bytes} bytes, statuses {dict(sorted(self.statuses.items()))}")


def _checks() -> list:
    from schemathesis.checks import (
        content_type_conformance,
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
    )

    return [not_a_server_error, status_code_conformance, content_type_conformance,
            response_schema_conformance]


def _call_and_check(case, base_url: str, label: str, outcome: FuzzOutcome, timeout: float):
    from schemathesis.core.failures import FailureGroup

    response = case.call(base_url=base_url, timeout=timeout)
    outcome.cases += 1
    outcome.statuses[response.status_code] += 1
    if 400 <= response.status_code < 500:
        outcome.largest_4xx_bytes = max(outcome.largest_4xx_bytes, len(response.content))
    try:
        case.validate_response(response, checks=_checks())
    except FailureGroup as group:  # checks failed: keep them and go on
        for error in group.exceptions:
            outcome.failures.append(f"{label} -> {response.status_code}: {str(error)[:300]}")


def _generated(operation, mode, examples: int, base_url: str, label: str,
               outcome: FuzzOutcome, timeout: float) -> None:
    from hypothesis import HealthCheck, Phase, given, settings

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case) -> None:
        _call_and_check(case, base_url, label, outcome, timeout)

    run()


def fuzz(base_url: str, max_examples: int = 200, good_bodies: list[dict[str, Any]] = (),
         timeout: float = 30.0) -> FuzzOutcome:
    """``max_examples`` generated cases against ``/predict`` (half valid, half invalid by the
    document), a few against ``/sites`` and each of ``good_bodies``; derandomized, so a run
    repeats."""
    import schemathesis
    from schemathesis import GenerationMode
    from schemathesis.core.errors import OperationNotFound

    schema = schemathesis.openapi.from_url(f"{base_url}/docs.json")
    outcome = FuzzOutcome()
    plan = [("/predict", "POST", GenerationMode.POSITIVE, max_examples // 2),
            ("/predict", "POST", GenerationMode.NEGATIVE, max_examples - max_examples // 2),
            ("/sites", "GET", GenerationMode.POSITIVE, 5)]
    for path, method, mode, examples in plan:
        label = f"{method} {path} ({mode.value})"
        try:
            operation = schema[path][method]
        except (KeyError, OperationNotFound):
            outcome.failures.append(f"{label}: not in the OpenAPI document")
            continue
        _generated(operation, mode, examples, base_url, label, outcome, timeout)
        if path == "/predict" and mode is GenerationMode.POSITIVE:
            for body in good_bodies:
                _call_and_check(operation.Case(body=body, media_type="application/json"),
                                base_url, f"{label}, a good body", outcome, timeout)
    return outcome
