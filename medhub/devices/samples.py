"""One vital-sign sample as every device decoder produces it (MQTT, Modbus, serial).

Decoders are pure: they turn bytes or registers into :class:`Sample` objects
and know nothing of patients or storage. The ingest layer adds what only it
knows: when the sample arrived, the device's clock offset, and the patient
the device was bound to at the sample's time.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple, Protocol


class Sample(NamedTuple):
    """A measured value of one vital from one device at the device's own timestamp.

    ``vital`` is medhub's vital key (``heart-rate``, ``oxygen-saturation``, …;
    see :mod:`medhub.clinical.vital_codes`), ``unit`` a UCUM code, ``device_time`` the
    device's timestamp as an aware UTC datetime (a device that sends local
    time without a zone is converted by its decoder, which is configured with
    the device's zone). ``mdc_code`` keeps the IEEE 11073 code when the device
    sent one; ``channel`` names the device channel when a device has several
    sensors for one vital.

    A NamedTuple, not a frozen dataclass: decoders make hundreds of thousands a
    second, and a frozen dataclass costs about 2 us each to build, several
    times more (measured with bench/device_decode.py).
    """

    device_id: str
    vital: str
    value: float
    unit: str
    device_time: datetime
    mdc_code: str | None = None
    channel: str | None = None


class SampleSink(Protocol):
    """Where decoded samples go: the ingest pipeline (attribution, time series, detection).

    ``store`` returns only once the samples are durably stored (or spooled for
    forwarding), so a transport may acknowledge its message after it returns;
    it raises :class:`medhub.errors.StoreUnavailableError` when they are not,
    and the transport must then not acknowledge (MQTT redelivers, a Modbus
    poller keeps the reading for the next attempt).
    """

    def store(
        self,
        samples: Sequence[Sample],
        *,
        received_at: datetime,
        sent_at: datetime | None = None,
    ) -> None:
        """``sent_at``: the device's clock when it sent the message, if the message says."""
