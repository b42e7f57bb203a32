"""The HTTP edge settings read from the environment, and the API-key check."""

from __future__ import annotations

import pytest

from localsoc.serving.edge import EdgeSettings, edge_settings, offers_key

KEY = "0123456789abcdef0123"


def test_the_defaults_ask_no_key_and_cap_and_time_requests():
    settings = edge_settings({})
    assert settings == EdgeSettings()
    assert settings.api_key is None
    assert settings.traffic() == {"timeout": 60.0, "max_concurrency": 128}
    assert settings.body_timeout_s < settings.request_timeout_s
    assert settings.header_timeout_s == 10.0


def test_the_environment_sets_every_edge():
    settings = edge_settings({"LOCALSOC_API_KEY": f" {KEY} ", "LOCALSOC_MAX_CONCURRENCY": "4",
                              "LOCALSOC_REQUEST_TIMEOUT_S": "20", "LOCALSOC_BODY_TIMEOUT_S": "5",
                              "LOCALSOC_HEADER_TIMEOUT_S": "2.5"})
    assert settings.api_key == KEY
    assert settings.traffic() == {"timeout": 20.0, "max_concurrency": 4}
    assert settings.body_timeout_s == 5.0
    assert settings.header_timeout_s == 2.5
    assert edge_settings({"LOCALSOC_MAX_CONCURRENCY": "0"}).max_concurrency is None
    assert edge_settings({"LOCALSOC_API_KEY": ""}).api_key is None


@pytest.mark.parametrize(("environ", "words"), [
    ({"LOCALSOC_API_KEY": "short"}, "at least 16"),
    ({"LOCALSOC_API_KEY": "a key with spaces in it"}, "without spaces"),
    ({"LOCALSOC_API_KEY": "   "}, "set but blank"),
    ({"LOCALSOC_API_KEY": "\t\n"}, "set but blank"),
    ({"LOCALSOC_API_KEY": "a" * 16}, "1 distinct character"),
    ({"LOCALSOC_API_KEY": "ab" * 12}, "2 distinct character"),
    ({"LOCALSOC_MAX_CONCURRENCY": "-1"}, "whole number"),
    ({"LOCALSOC_MAX_CONCURRENCY": "2.5"}, "whole number"),
    ({"LOCALSOC_REQUEST_TIMEOUT_S": "soon"}, "not a number"),
    ({"LOCALSOC_BODY_TIMEOUT_S": "60"}, "below LOCALSOC_REQUEST_TIMEOUT_S"),
    ({"LOCALSOC_REQUEST_TIMEOUT_S": "10"}, "below LOCALSOC_REQUEST_TIMEOUT_S"),
    ({"LOCALSOC_BODY_TIMEOUT_S": "0"}, "above 0"),
    ({"LOCALSOC_HEADER_TIMEOUT_S": "0"}, "LOCALSOC_HEADER_TIMEOUT_S .* above 0"),
    ({"LOCALSOC_HEADER_TIMEOUT_S": "inf"}, "LOCALSOC_HEADER_TIMEOUT_S .* above 0"),
], ids=["short key", "key with spaces", "blank key", "whitespace key", "one repeated character",
        "two characters", "negative cap", "fractional cap", "not a number",
        "body timeout = request timeout", "request timeout below the body timeout",
        "no body timeout", "no header timeout", "infinite header timeout"])
def test_a_setting_that_cannot_be_used_is_refused_with_its_name(environ, words):
    with pytest.raises(ValueError, match=words):
        edge_settings(environ)


@pytest.mark.parametrize(("headers", "accepted"), [
    ({b"x-api-key": KEY.encode()}, True),
    ({b"authorization": f"Bearer {KEY}".encode()}, True),
    ({b"authorization": f"bearer   {KEY}".encode()}, True),
    ({b"authorization": b"Bearer wrong", b"x-api-key": KEY.encode()}, True),
    ({}, False),
    ({b"x-api-key": KEY[:-1].encode()}, False),
    ({b"x-api-key": (KEY + "0").encode()}, False),
    ({b"authorization": f"Basic {KEY}".encode()}, False),
    ({b"authorization": KEY.encode()}, False),
    ({b"authorization": b"Bearer"}, False),
])
def test_the_key_is_taken_from_a_bearer_token_or_x_api_key(headers, accepted):
    assert offers_key(headers, KEY) is accepted
