"""An aws credential is parsed without calling anything, and its errors never quote the secret."""

from __future__ import annotations

import json

import pytest

from openpitrix.providers.aws.credential import check_endpoint, parse_aws_key
from openpitrix.providers.aws.provider import AwsProvider
from openpitrix.providers.base import CredentialInvalid, EndpointRefused

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYsecretSECRET"
KEY = {"access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": SECRET, "region": "eu-west-1"}


def test_json_and_yaml_credentials_give_the_same_key() -> None:
    yaml_text = "\n".join(f"{k}: {v}" for k, v in KEY.items())

    from_json = parse_aws_key(json.dumps(KEY))

    assert from_json == parse_aws_key(yaml_text)
    assert (from_json.region, from_json.session_token) == ("eu-west-1", None)
    assert SECRET not in repr(from_json)


def test_a_session_token_is_kept_for_temporary_keys() -> None:
    key = parse_aws_key(json.dumps({**KEY, "session_token": "FwoGZXIvYXdzEJr//////////token"}))

    assert key.session_token == "FwoGZXIvYXdzEJr//////////token"
    assert "FwoGZ" not in repr(key)


@pytest.mark.parametrize(
    ("content", "names"),
    [
        (json.dumps({**KEY, "region": None}), "region"),
        (json.dumps({k: v for k, v in KEY.items() if k != "region"}), "region"),
        (json.dumps({**KEY, "region": "Europe"}), "region"),
        (json.dumps({**KEY, "access_key_id": SECRET}), "access_key_id"),
        (json.dumps({**KEY, "secret_access_key": ""}), "secret_access_key"),
        (json.dumps({**KEY, "token": SECRET}), "token"),
    ],
)
def test_a_malformed_credential_names_the_field_and_never_the_secret(
    content: str, names: str
) -> None:
    with pytest.raises(CredentialInvalid) as info:
        parse_aws_key(content)

    assert info.value.code == "credential_invalid"
    assert names in info.value.message
    assert SECRET not in info.value.message and "secretSECRET" not in str(info.value)


def test_text_that_is_not_yaml_is_refused_without_quoting_it() -> None:
    with pytest.raises(CredentialInvalid) as info:
        parse_aws_key(f'{{"secret_access_key": "{SECRET}", [')

    assert info.value.message == "credential is not valid JSON or YAML"


def test_a_list_is_not_a_credential() -> None:
    with pytest.raises(CredentialInvalid, match="must be a mapping"):
        parse_aws_key(json.dumps([KEY]))


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("https://ec2.example.com/", "https://ec2.example.com"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("https://[2001:db8::1]:443", "https://[2001:db8::1]:443"),
    ],
)
def test_an_endpoint_is_kept_as_scheme_and_host(given: str, kept: str) -> None:
    assert check_endpoint(given) == kept


@pytest.mark.parametrize(
    "given",
    [
        "ftp://ec2.example.com",
        "ec2.example.com",
        "https://user:pw@ec2.example.com",
        "https://ec2.example.com/api",
        "https://ec2.example.com?x=1",
        "https://ec2.example.com:port",
    ],
)
def test_an_endpoint_that_is_not_a_plain_http_url_is_refused(given: str) -> None:
    with pytest.raises(EndpointRefused) as info:
        check_endpoint(given)

    assert info.value.code == "endpoint_invalid"


def test_the_provider_parses_the_credential_and_its_endpoint() -> None:
    provider = AwsProvider()

    parsed = provider.parse_credential(json.dumps(KEY), "https://ec2.example.com/")
    default = provider.parse_credential(json.dumps(KEY), "")

    assert parsed.endpoint_url == "https://ec2.example.com"
    assert default.endpoint_url == ""  # AWS's own endpoints, by region
    with pytest.raises(CredentialInvalid) as info:
        provider.parse_credential(json.dumps(KEY), "file:///etc/passwd")
    assert info.value.code == "endpoint_invalid"
