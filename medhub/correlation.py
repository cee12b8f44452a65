"""Correlation ids: one id follows a piece of work from where it came in to where it went out.

An HTTP request (its ``X-Request-ID``, or a new id), an inbound HL7 message, or
an alert gets an id; while the work runs it is bound in structlog's context
variables, so every log line carries ``correlation_id``, and what the work
writes for later (the HL7 message log, outbox events for RabbitMQ, outbound HL7
queue rows) stores it, so the relay's and the sender's log lines and the AMQP
message's ``correlation_id`` property name the same id. An operator can grep
one id across processes and find the message, the alert it raised and the
report sent about it.

Outside :mod:`medhub`'s layers (like :mod:`medhub.errors`): every layer tags its work.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import structlog

KEY: Final = "correlation_id"
#: The longest id kept (columns are 64 characters); longer client ids are replaced.
MAX_LENGTH: Final = 64
_SAFE: Final = re.compile(r"[A-Za-z0-9._:@/+=-]{1,64}")


def new_correlation_id() -> str:
    return uuid.uuid4().hex


def current_correlation_id() -> str | None:
    """The id bound to the work running now (None outside any)."""
    value = structlog.contextvars.get_contextvars().get(KEY)
    return value if isinstance(value, str) else None


def accepted_correlation_id(value: str | None) -> str | None:
    """A client's ``X-Request-ID`` if it is safe to log and store, else None (a new one is made).

    Log lines are JSON, but the id also reaches AMQP headers and HL7 tooling: only
    short, printable, unambiguous ids are taken over.
    """
    if value is None:
        return None
    value = value.strip()
    return value if _SAFE.fullmatch(value) else None


@contextmanager
def correlated(correlation_id: str | None = None) -> Iterator[str]:
    """Bind ``correlation_id`` (or a new one) for the work inside the block."""
    value = correlation_id or new_correlation_id()
    with structlog.contextvars.bound_contextvars(**{KEY: value}):
        yield value


@contextmanager
def continued(correlation_id: str | None) -> Iterator[str | None]:
    """Bind a stored id again (a relay or sender working on a queued row); None binds nothing."""
    if correlation_id is None:
        yield None
        return
    with structlog.contextvars.bound_contextvars(**{KEY: correlation_id}):
        yield correlation_id
