"""``medhub token``, ``medhub user …`` and ``medhub apikey …``: the operator's access tools.

``medhub token --role R --subject S`` prints an access token signed with the
server's secret (``MEDHUB_JWT_SECRET``, or the embedded default's generated
one), for scripts and for a first login before any user exists. Users and API
keys are kept in the resource database, so these commands run where
``medhub serve`` would, with the same settings.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from dataclasses import asdict
from datetime import timedelta
from typing import Any, get_args

from medhub.api.accounts import Accounts
from medhub.api.permissions import Principal, Role, care_units_from, parse_scopes
from medhub.api.tokens import issue_access_token
from medhub.config import Settings
from medhub.fhir.write_rules import utc_now
from medhub.migrations import upgrade
from medhub.wiring import make_store
from medhub.wiring_security import signing_secret

_ROLES = list(get_args(Role))


def _units(text: str | None) -> list[str] | None:
    if text is None or text.strip() in ("", "*"):
        return None
    return [unit.strip() for unit in text.split(",") if unit.strip()]


def _cmd_token(settings: Settings, args: argparse.Namespace) -> int:
    units = _units(args.units)
    principal = Principal(
        subject=args.subject,
        role=args.role,
        kind="token",
        care_units=care_units_from(units),
        scopes=parse_scopes(args.scopes or ""),
        practitioner=args.practitioner,
        display=args.subject,
    )
    ttl = timedelta(seconds=args.ttl)
    print(issue_access_token(principal, secret=signing_secret(settings), now=utc_now(), ttl=ttl))
    return 0


def _accounts(settings: Settings) -> tuple[Accounts, Any]:
    store = make_store(settings)
    if settings.auto_migrate:
        upgrade(store.engine)
    return Accounts(store.session, clock=utc_now), store


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    return getpass.getpass(f"password for {args.username}: ")


def _cmd_user_add(settings: Settings, args: argparse.Namespace) -> int:
    accounts, store = _accounts(settings)
    try:
        user = accounts.create_user(
            args.username,
            _password(args),
            role=args.role,
            care_units=_units(args.units),
            display_name=args.name or "",
            practitioner=args.practitioner,
        )
    finally:
        store.close()
    print(json.dumps(asdict(user)))
    return 0


def _cmd_user_list(settings: Settings, _args: argparse.Namespace) -> int:
    accounts, store = _accounts(settings)
    try:
        for user in accounts.list_users():
            print(json.dumps(asdict(user)))
    finally:
        store.close()
    return 0


def _cmd_user_totp(settings: Settings, args: argparse.Namespace) -> int:
    accounts, store = _accounts(settings)
    try:
        print(accounts.enroll_totp(args.username))
    finally:
        store.close()
    return 0


def _cmd_apikey_create(settings: Settings, args: argparse.Namespace) -> int:
    accounts, store = _accounts(settings)
    try:
        print(
            accounts.create_api_key(
                args.name, role=args.role, scopes=args.scopes or "", care_units=_units(args.units)
            )
        )
    finally:
        store.close()
    return 0


def _cmd_apikey_revoke(settings: Settings, args: argparse.Namespace) -> int:
    accounts, store = _accounts(settings)
    try:
        accounts.revoke_api_key(args.prefix)
    finally:
        store.close()
    return 0


def add_auth_commands(commands: Any) -> None:
    token = commands.add_parser("token", help="print an access token for a role")
    token.add_argument("--role", required=True, choices=_ROLES)
    token.add_argument("--subject", required=True, help="who the token is for (logged, audited)")
    token.add_argument("--units", help="care units, comma separated; omitted or * for all")
    token.add_argument("--scopes", help="SMART scopes, e.g. 'system/Observation.write'")
    token.add_argument("--practitioner", help="the Practitioner reference of the subject")
    token.add_argument("--ttl", type=int, default=3600, help="seconds (default 3600)")
    token.set_defaults(handler=_cmd_token)

    user = commands.add_parser("user", help="users of the API and dashboards").add_subparsers(
        dest="user_command", required=True
    )
    add = user.add_parser("add", help="create a user")
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=_ROLES)
    add.add_argument("--units", help="care units, comma separated; omitted or * for all")
    add.add_argument("--name", help="the name shown in the dashboards")
    add.add_argument("--practitioner", help="Practitioner/… this user acts as")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.set_defaults(handler=_cmd_user_add)
    user.add_parser("list", help="list users").set_defaults(handler=_cmd_user_list)
    totp = user.add_parser("totp", help="enrol a TOTP second factor; prints the secret")
    totp.add_argument("username")
    totp.set_defaults(handler=_cmd_user_totp)

    apikey = commands.add_parser("apikey", help="API keys for gateways and interface engines")
    keys = apikey.add_subparsers(dest="apikey_command", required=True)
    create = keys.add_parser("create", help="create a key; printed once")
    create.add_argument("name")
    create.add_argument("--role", required=True, choices=_ROLES)
    create.add_argument("--scopes")
    create.add_argument("--units")
    create.set_defaults(handler=_cmd_apikey_create)
    revoke = keys.add_parser("revoke", help="revoke a key by its prefix")
    revoke.add_argument("prefix")
    revoke.set_defaults(handler=_cmd_apikey_revoke)
