"""``crm-api secrets``: make a master key, seal what is stored in the clear, rotate the master key.

Rotating (README, "Secrets at rest", gives the whole procedure): every sealed value is opened with the keys in
use and sealed again under the new key, in one transaction. With the embedded database's key file, the file
holds the new key beside the old ones until that transaction has committed, so at every moment it opens
everything the database holds.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from . import masterkey, vault
from .config import get_settings
from .db import create_pool, database_url
from .masterkey import Keyring
from .migrate import upgrade


def _err(message: str) -> None:
    print(f"crm-api: {message}", file=sys.stderr)


async def _encrypt(url: str, keyring: Keyring) -> vault.Sealed:
    pool = await create_pool(url, 1)
    try:
        await vault.check(pool, keyring)
        async with pool.acquire() as conn, conn.transaction():
            return await vault.seal_clear(conn, keyring, records=True)
    finally:
        await pool.close()


async def _rotate(url: str, keyring: Keyring) -> vault.Sealed:
    pool = await create_pool(url, 1)
    try:
        return await vault.reseal_all(pool, keyring)
    finally:
        await pool.close()


def cmd_new_key(_: argparse.Namespace) -> int:
    print(masterkey.new_key())
    return 0


def cmd_encrypt(_: argparse.Namespace) -> int:
    url = database_url()
    upgrade(url)
    done = asyncio.run(_encrypt(url, masterkey.load(get_settings())))
    _err(f"sealed {done.endpoints} webhook endpoints' secrets and {done.records} stored responses")
    return 0


def cmd_rotate(args: argparse.Namespace) -> int:
    settings = get_settings()
    url = database_url()
    upgrade(url)
    current = masterkey.load(settings)
    own_file = masterkey.embedded_key_file(settings)  # the one key file crm-api writes itself
    given = sys.stdin.readline().strip() if args.new_key == "-" else args.new_key
    new = given or (masterkey.new_key() if own_file else current.keys[0])
    keyring = current.led_by(new)  # refuses a malformed new key before anything changes
    if own_file:
        masterkey.write_key_file(own_file, keyring.keys)
    done = asyncio.run(_rotate(url, keyring))
    _err(f"sealed {done.endpoints} webhook endpoints' secrets and {done.records} stored responses anew")
    if own_file:
        masterkey.write_key_file(own_file, [new])
        _err(f"{own_file} now holds the new key alone; start crm-api again")
    elif new != current.keys[0] or len(current.keys) > 1:
        _err(
            "every secret is sealed under the new key: give every process CRM_SECRET_KEY=<the new key> alone"
        )
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    secrets = sub.add_parser(
        "secrets", help="the master key that seals stored secrets (README: Secrets at rest)"
    )
    commands = secrets.add_subparsers(dest="secrets_command", required=True)
    commands.add_parser("new-key", help="print a new master key for CRM_SECRET_KEY").set_defaults(
        func=cmd_new_key
    )
    commands.add_parser(
        "encrypt", help="seal the secrets an older version stored in the clear (each start seals most)"
    ).set_defaults(func=cmd_encrypt)
    rotate = commands.add_parser(
        "rotate", help="seal every stored secret under a new master key, in one transaction"
    )
    rotate.add_argument(
        "--new-key",
        help="the new master key (`crm-api secrets new-key`), or - to read it from stdin (kept out of ps and "
        "shell history); default: a new one in the embedded database's key file, or the first of "
        "CRM_SECRET_KEY",
    )
    rotate.set_defaults(func=cmd_rotate)
