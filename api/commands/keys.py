"""``bonemets keys create|list|revoke``: API keys for machine clients, in the gateway's store.

A key is printed once, alone on stdout (so ``KEY=$(bonemets keys create ...)`` captures it),
and only its keyed hash is kept (:class:`api.auth.keys.KeyStore`). The store is the one the
gateway reads, ``<data_dir>/keys.sqlite`` or the shared PostgreSQL database
(``BONEMETS_DATABASE_URL``, with ``BONEMETS_KEY_PEPPER``): a key made or revoked here counts on
the gateway's next request, without a restart.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from api.auth.keys import KEYS_FILE, ApiKey, KeyStore, open_key_store, parse_scopes
from api.auth.principal import Scope
from api.config import Settings

# What a machine client (a PACS router, an integration engine) needs: its own studies.
DEFAULT_CLIENT_SCOPES = (Scope.WRITE, Scope.READ, Scope.DELETE)

EPILOG = """examples:
  bonemets keys create --client pacs-router           # studies:write studies:read studies:delete
  bonemets keys create --client ops --scopes admin    # every client's studies
  KEY=$(bonemets keys create --client ris --scopes studies:read)   # only the key is on stdout
  bonemets keys list
  bonemets keys revoke 3f2a9c1b7d4e                   # the id that 'keys list' shows

rotate a client's key: create a new one, move the client to it, then revoke the old one.
the store is <data dir>/keys.sqlite (BONEMETS_DATA_DIR, or --data-dir): run these as the
user the gateway runs as, on the same data directory. With BONEMETS_DATABASE_URL (and
BONEMETS_KEY_PEPPER) set, the keys are in that database, shared by every replica.
"""


def add_parser(subparsers: Any) -> None:
    """Register ``bonemets keys`` and its three actions."""
    parser = subparsers.add_parser(
        "keys", help="create, list and revoke API keys",
        description="Manage the API keys machine clients send as 'Authorization: Bearer KEY'"
                    " (or 'X-API-Key: KEY'). Keys are stored only as keyed hashes.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    _add_create(actions)
    listing = _action(actions, "list", "list keys: id, client, scopes, created, revoked",
                      "  bonemets keys list\n  bonemets keys list --data-dir /srv/bonemets/data")
    listing.set_defaults(func=list_keys)
    revoking = _action(actions, "revoke", "revoke a key by its id (at once, for good)",
                       "  bonemets keys revoke 3f2a9c1b7d4e")
    revoking.add_argument("key_id", metavar="KEY_ID", help="the id 'bonemets keys list' shows")
    revoking.set_defaults(func=revoke_key)


def _add_create(actions: Any) -> None:
    create = _action(
        actions, "create", "make a key for a client and print it, once",
        "  bonemets keys create --client pacs-router\n"
        "  bonemets keys create --client ops --scopes admin\n"
        "  bonemets keys create --client viewer --scopes studies:read",
    )
    create.add_argument("--client", required=True,
                        help="the client's name (owner of the studies it submits):"
                             " 1-64 of A-Z a-z 0-9 . _ @ -")
    create.add_argument("--scopes", nargs="+", metavar="SCOPE",
                        help="any of: " + " ".join(scope.value for scope in Scope) +
                             " (default: " + " ".join(DEFAULT_CLIENT_SCOPES) + ")")
    create.set_defaults(func=create_key)


def _action(actions: Any, name: str, summary: str, examples: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = actions.add_parser(
        name, help=summary, description=summary[0].upper() + summary[1:] + ".",
        epilog="examples:\n" + examples + "\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data-dir", type=Path,
                        help="the gateway's data directory (default BONEMETS_DATA_DIR, data)")
    return parser


def key_store_path(data_dir: Path) -> Path:
    """Where the gateway's keys are: ``<data_dir>/keys.sqlite``."""
    return data_dir / KEYS_FILE


def _store(args: argparse.Namespace, must_exist: bool = False) -> KeyStore:
    """The gateway's key store; with ``must_exist``, a SQLite one must already be there: a
    mistyped data directory is not an empty one."""
    settings = Settings()
    data_dir = args.data_dir or settings.data_dir
    path = key_store_path(data_dir)
    if must_exist and not settings.database_url and not path.is_file():
        raise ValueError(f"no key store at {path}: no key was made there yet"
                         " (check --data-dir or BONEMETS_DATA_DIR)")
    return open_key_store(data_dir, settings.database_url, settings.key_pepper_hex)


def create_key(args: argparse.Namespace) -> int:
    scopes = parse_scopes(" ".join(args.scopes) if args.scopes else DEFAULT_CLIENT_SCOPES)
    store = _store(args)
    try:
        record, key = store.create(args.client, scopes)
    finally:
        store.close()
    print(key)
    print(f"key {record.id} for client {record.client!r} ({' '.join(sorted(record.scopes))})"
          f" stored in {store.where}; it is shown this once: keep it now."
          f'\nuse it as:  curl -H "Authorization: Bearer $KEY" ...', file=sys.stderr)
    return 0


def list_keys(args: argparse.Namespace) -> int:
    store = _store(args, must_exist=True)
    try:
        records = store.list()
    finally:
        store.close()
    for line in key_table(records):
        print(line)
    return 0


def key_table(records: list[ApiKey]) -> list[str]:
    """The lines ``keys list`` prints: a header, then one key a line (never a secret)."""
    rows = [("ID", "CLIENT", "SCOPES", "CREATED", "REVOKED")]
    rows += [(record.id, record.client, ",".join(sorted(record.scopes)),
              _utc(record.created_at),
              "-" if record.revoked_at is None else _utc(record.revoked_at))
             for record in records]
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    # The last column is not padded: no trailing spaces.
    return [" ".join([*(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)),
                      row[4]]) for row in rows]


def revoke_key(args: argparse.Namespace) -> int:
    store = _store(args, must_exist=True)
    try:
        revoked = store.revoke(args.key_id)
        record = next((key for key in store.list() if key.id == args.key_id), None)
    finally:
        store.close()
    if record is None:
        raise ValueError(f"no key with id {args.key_id!r} (see 'bonemets keys list')")
    if revoked:
        print(f"key {record.id} of client {record.client!r} revoked", file=sys.stderr)
    else:  # revoking twice is what a rotation script may do: the key is refused either way
        print(f"key {record.id} of client {record.client!r} was already revoked"
              f" ({_utc(record.revoked_at or 0.0)})", file=sys.stderr)
    return 0


def _utc(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))
