"""What the API shows of a VM release's manifest and values (providers/vm/redact.py)."""

from __future__ import annotations

from openpitrix.providers.vm.redact import REDACTED, redact_objects, redact_settings

NODE = {
    "kind": "Node",
    "node_id": "db-1",
    "name": "db-1",
    "role": "db",
    "cpu": 2,
    "env": {"DB_PASSWORD": "pw", "DSN": "mysql://root:longer-pw@db", "PORT": "3306"},
    "services": {"stop": {"cmd": "stop --password=pw", "order": 1}},
    "secrets": ["longer-pw", "pw"],
}


def test_every_secret_is_hidden_wherever_it_was_rendered_but_in_the_nodes_identity() -> None:
    [shown] = redact_objects([{**NODE, "node_id": "pw-1"}])
    assert shown["env"] == {
        "DB_PASSWORD": REDACTED,
        "DSN": f"mysql://root:{REDACTED}@db",  # the longer secret whole, not "longer-******"
        "PORT": "3306",
    }
    assert shown["services"]["stop"] == {"cmd": f"stop --password={REDACTED}", "order": 1}
    assert (shown["node_id"], shown["cpu"]) == ("pw-1", 2)
    assert "secrets" not in shown


def test_settings_hide_the_secrets_and_every_text_until_the_release_is_rendered() -> None:
    values = {"cluster": {"db": {"password": "pw", "count": 1}, "name": "shop"}}
    assert redact_settings(values, [NODE]) == {
        "cluster": {"db": {"password": REDACTED, "count": 1}, "name": "shop"}
    }
    # A pending release (no manifest yet) or one rendered before secrets were kept: which
    # settings are passwords is unknown, so no text is shown.
    for objects in ([], [{k: v for k, v in NODE.items() if k != "secrets"}]):
        assert redact_settings(values, objects) == {
            "cluster": {"db": {"password": REDACTED, "count": 1}, "name": REDACTED}
        }
