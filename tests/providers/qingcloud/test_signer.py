"""Our signer gives the signature QingCloud's official SDK gives, for awkward parameters too."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from qingcloud.conn.auth import QuerySignatureAuthHandler

from openpitrix.providers.qingcloud import signer
from openpitrix.providers.qingcloud.client import flatten

KEY, SECRET = "QYACCESSKEYIDEXAMPLE", "SECRETACCESSKEY"

# The request of QingCloud's signature documentation, then parameters that encoding gets wrong
# easily: non-ASCII, spaces (%20, never +), reserved characters, list parameters past .9 (which
# sort as strings: instances.10 before instances.2), an empty value.
CASES: dict[str, dict[str, str]] = {
    "documented example": {
        "count": "1",
        "vxnets.1": "vxnet-0",
        "zone": "pek3a",
        "instance_type": "small_b",
        "instance_name": "demo",
        "image_id": "centos64x86a",
        "login_mode": "passwd",
        "login_passwd": "QingCloud20130712",
        "action": "RunInstances",
    },
    "unicode": {"action": "RunInstances", "zone": "pek3a", "instance_name": "数据库 节点 ü"},
    "spaces and reserved characters": {
        "action": "DescribeInstances",
        "zone": "sh1a",
        "search_word": "a b+c/d?e=f&g~h*i'j(k)l!m;n:o@p$q,r#s[t]u%v",
    },
    "list parameters": flatten(
        {
            "action": "DescribeInstances",
            "zone": "pek3a",
            "instances": [f"i-{n:08d}" for n in range(12)],
        }
    ),
    "empty value and dotted names": {
        "action": "RunInstances",
        "zone": "gd2",
        "instance_name": "",
        "userdata_value": "IyEvYmluL3NoCmVjaG8gaGk=",
        "vxnets.1": "vxnet-0",
    },
}


def official(params: dict[str, str], method: str) -> tuple[str, str]:
    handler = QuerySignatureAuthHandler("api.qingcloud.com", KEY, SECRET)
    query, signature = handler._calc_signature(dict(params), method, "/iaas/")
    return query, signature.decode()


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_our_signature_is_the_official_sdks(case: str, method: str) -> None:
    signed = signer.sign_params(
        CASES[case],
        access_key_id=KEY,
        secret_access_key=SECRET,
        method=method,
        path="/iaas/",
        now=datetime(2013, 8, 27, 14, 30, 10, tzinfo=UTC),
    )
    unsigned = {k: v for k, v in signed.items() if k != "signature"}

    query, signature = official(unsigned, method)

    assert signed["time_stamp"] == "2013-08-27T14:30:10Z"
    assert signer.canonical_query(unsigned) == query
    assert signed["signature"] == signature


def test_the_signature_covers_method_path_and_every_value() -> None:
    params = dict(CASES["documented example"])
    base = signer.signature(SECRET, "GET", "/iaas/", params)

    assert signer.signature(SECRET, "POST", "/iaas/", params) != base
    assert signer.signature(SECRET, "GET", "/iaas/v2/", params) != base
    assert signer.signature(SECRET, "GET", "/iaas/", {**params, "count": "2"}) != base
    assert signer.signature("other secret", "GET", "/iaas/", params) != base


def test_spaces_are_percent_20_and_hex_is_upper_case() -> None:
    query = signer.canonical_query({"instance_name": "a b:c", "zone": "pek3a"})

    assert query == "instance_name=a%20b%3Ac&zone=pek3a"


def test_flatten_numbers_lists_from_one_and_writes_booleans_as_digits() -> None:
    assert flatten({"instances": ["i-a", "i-b"], "force": True, "skip": None, "count": 3}) == {
        "instances.1": "i-a",
        "instances.2": "i-b",
        "force": "1",
        "count": "3",
    }
