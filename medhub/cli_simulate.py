"""``medhub simulate``: simulated bedside devices, so the hub can be seen working without hardware.

``medhub simulate mqtt`` publishes N simulated monitors (trends, noise,
dropouts, out-of-range episodes) to the device broker; ``medhub simulate
modbus`` serves a simulated bedside monitor over Modbus TCP for medhub, or any
Modbus client, to poll.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import signal
import threading
from typing import Any

from medhub.adapters.mqtt_simulator import run_simulator as run_mqtt_simulator
from medhub.config import Settings
from medhub.devices.modbus_sim import run_simulator
from medhub.devices.register_map_file import resolve_register_map, shipped_map_names
from medhub.devices.simulator import SimulatorProfile
from medhub.errors import ConfigurationError


def _cmd_modbus(_settings: Settings, args: argparse.Namespace) -> int:
    reg_map = resolve_register_map(args.map)

    def ready(port: int) -> None:
        print(
            f"simulated {args.map} (unit {args.unit}) on modbus+tcp://{args.host}:{port}",
            flush=True,
        )

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            run_simulator(
                reg_map,
                host=args.host,
                port=args.port,
                unit_id=args.unit,
                seed=args.seed,
                on_ready=ready,
            )
        )
    return 0


def _cmd_mqtt(settings: Settings, args: argparse.Namespace) -> int:
    url = args.url or (settings.mqtt_url.get_secret_value() if settings.mqtt_url else None)
    if url is None:
        raise ConfigurationError("simulate mqtt: give --url or set MEDHUB_MQTT_URL")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    report = run_mqtt_simulator(
        url,
        devices=args.devices,
        rate=args.rate,
        duration=args.duration,
        seed=args.seed,
        prefix=args.prefix,
        profile=SimulatorProfile(
            period_seconds=args.period,
            episodes_per_hour=args.episodes_per_hour,
            dropouts=not args.no_dropouts,
        ),
        stop=stop,
    )
    print(json.dumps(dataclasses.asdict(report)))
    return 0


def add_simulate_commands(commands: Any) -> None:
    simulate = commands.add_parser("simulate", help="run simulated bedside devices")
    kinds = simulate.add_subparsers(dest="kind", required=True)
    modbus = kinds.add_parser("modbus", help="serve a simulated monitor over Modbus TCP")
    modbus.add_argument(
        "--map",
        default="generic-bedside-monitor",
        help=f"register map: shipped ({', '.join(shipped_map_names())}) or a .toml path",
    )
    modbus.add_argument("--host", default="127.0.0.1")
    modbus.add_argument("--port", type=int, default=5020)
    modbus.add_argument("--unit", type=int, default=1)
    modbus.add_argument("--seed", type=int, default=None)
    modbus.set_defaults(handler=_cmd_modbus)
    mqtt = kinds.add_parser("mqtt", help="publish simulated monitors to the MQTT broker")
    mqtt.add_argument("--url", help="mqtt[s]://host:port (default: MEDHUB_MQTT_URL)")
    mqtt.add_argument("--devices", type=int, default=10)
    mqtt.add_argument("--rate", type=float, default=1.0, help="messages/s per device")
    mqtt.add_argument("--duration", type=float, default=None, help="seconds (default: until ^C)")
    mqtt.add_argument("--seed", type=int, default=0)
    mqtt.add_argument("--prefix", default="sim", help="device ids are <prefix>-<n>")
    mqtt.add_argument("--period", type=float, default=1.0, help="seconds between readings")
    mqtt.add_argument("--episodes-per-hour", type=float, default=0.5)
    mqtt.add_argument("--no-dropouts", action="store_true")
    mqtt.set_defaults(handler=_cmd_mqtt)
