"""JetStream publishes with their acks routed to one reply subscription, for the relay's pipeline.

Each message goes out as a core NATS publish whose reply subject carries a token; the stream's
ack comes back to one wildcard subscription and is handed to the current sink with its token.
This is what nats-py's `publish_async` does, minus what the relay does not need per message: a
future, a semaphore and a random token each, and a parsed `PubAck`. The relay only asks whether
the message is stored, so an ack without an error field is a success unread (a duplicate one
too: the stream holds the message), and only an error is decoded.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import count
from typing import Any

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.errors import APIError, NoStreamResponseError

NO_RESPONDERS = "503"  # the Status header of a publish that no stream listens to

# Called with a publish's token and None when the stream stored the message, else the error.
AckSink = Callable[[str, Exception | None], None]


def ack_error(msg: Msg) -> Exception | None:
    """None when the reply acknowledges a stored message, else the error it stands for."""
    if msg.headers and msg.headers.get("Status") == NO_RESPONDERS:
        return NoStreamResponseError()
    if b'"error"' not in msg.data:
        return None
    reply: dict[str, Any] = orjson.loads(msg.data)
    if "error" not in reply:
        return None
    try:
        APIError.from_error(reply["error"])  # raises the matching subclass
    except APIError as exc:
        return exc
    return APIError(description=str(reply["error"]))


class AckInbox:
    """One reply subscription for every publish of a relay; tokens are never reused, so a late
    ack of a batch that stopped waiting cannot be taken for one of the next batch."""

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._prefix = ""
        self._sub: Any = None
        self._tokens = count()
        self.sink: AckSink | None = None

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str]) -> str:
        """Send one message; its ack goes to `sink` with the returned token."""
        if self._sub is None:
            self._prefix = self._nc.new_inbox() + "."
            self._sub = await self._nc.subscribe(self._prefix + "*", cb=self._on_reply)
        token = str(next(self._tokens))
        await self._nc.publish(subject, payload, reply=self._prefix + token, headers=headers)
        return token

    async def _on_reply(self, msg: Msg) -> None:
        if self.sink is not None:
            self.sink(msg.subject[len(self._prefix) :], ack_error(msg))

    async def close(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await sub.unsubscribe()
