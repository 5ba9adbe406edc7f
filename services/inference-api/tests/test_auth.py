"""API key entries: plain keys serve every twin, `key:twin` serves one."""
from __future__ import annotations

import pytest
from pydantic import SecretStr
from twin_inference.auth import ApiKeys, Forbidden, Unauthorized


def keys(*entries: str) -> ApiKeys:
    return ApiKeys.from_settings([SecretStr(entry) for entry in entries])


def test_no_keys_configured_means_an_open_api():
    assert keys().scope_of(None).allows("anyone")


def test_a_plain_key_serves_every_twin_and_a_bound_key_one():
    api_keys = keys("everything", "only:ada", "with:colon:grace")

    assert api_keys.scope_of("everything").allows("grace")
    assert api_keys.scope_of("only").allows("ada") and not api_keys.scope_of("only").allows("grace")
    # The part after the last ":" names the twin: the key itself may hold colons.
    assert api_keys.scope_of("with:colon").twin_id == "grace"
    with pytest.raises(Forbidden, match="limited to the twin 'ada'"):
        api_keys.scope_of("only").require("grace")


@pytest.mark.parametrize("presented", [None, "", "only:ada", "nope"])
def test_missing_or_unknown_keys_are_refused(presented):
    with pytest.raises(Unauthorized):
        keys("everything", "only:ada").scope_of(presented)


def test_an_entry_without_a_key_is_a_configuration_error():
    with pytest.raises(ValueError, match="empty key"):
        keys(":ada")
