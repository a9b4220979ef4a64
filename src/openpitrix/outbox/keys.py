"""Which messages must keep their order: one key per job or resource.

An event's key is its resource (`<kind>.<id>` from its subject), so a resource's events, and with
them every event of a job (a job's events all name its resource), reach watchers in the order
they were written. A command's key is the job it is about (`job.<job_id>` from its payload): a
job's commands go out in order. Anything else is keyed by its subject. Messages of different
keys have no order between them: the relay publishes them side by side.
"""

from __future__ import annotations

from typing import Any

from openpitrix.bus.topology import COMMAND_PREFIX, EVENT_PREFIX

KEY_MAX = 300  # outbox.key's width


def message_key(subject: str, payload: bytes | dict[str, Any]) -> str:
    tokens = subject.split(".")
    if subject.startswith(EVENT_PREFIX + ".") and len(tokens) >= 5:
        return f"{tokens[3]}.{tokens[4]}"
    if subject.startswith(COMMAND_PREFIX + ".") and isinstance(payload, dict):
        job_id = payload.get("job_id")
        if isinstance(job_id, str) and job_id:
            return f"job.{job_id}"
    return subject[:KEY_MAX]
