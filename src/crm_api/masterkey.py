"""The master key: secrets the database holds (webhook signing secrets, stored responses that carry a secret)
are sealed with it, using Fernet from ``cryptography`` (AES-128-CBC with an HMAC-SHA256, authenticated), so a
copy of the database, a dump or a backup does not give them away.

Where the key comes from, in this order:
- ``CRM_SECRET_KEY``: one key, or during a rotation several, comma-separated: the first seals, each opens.
- ``CRM_SECRET_KEY_FILE``: a file holding the same, one key a line (a Docker or systemd secret).
- with the embedded database (no ``CRM_DATABASE_URL``): ``<data dir>/secret.key``, made with mode 0600 on
  first start. With a configured database there is no such default: processes on several hosts would each
  make a key of their own, and each would fail to open what the others sealed.

Rotation (``crm-api secrets rotate``, docs in README's "Secrets at rest") re-seals every stored value under a
new first key; ``Keyring.reseal`` opens with any key and seals with the first.
"""

from __future__ import annotations

import binascii
from collections.abc import Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from . import private_files
from .config import Settings

KEY_FILE = "secret.key"
# Every Fernet token starts so: the version byte 0x80, then a 64-bit timestamp whose high bytes are zero
# for millennia. JSON and ``whsec_`` secrets never do, which is how a sealed value is told from a clear one.
SEALED_PREFIX = "gAAAAA"
_OPENED_KEEP = 4096


class MasterKeyError(Exception):
    """The master key is missing or malformed, or does not open what the database holds."""


def new_key() -> str:
    return Fernet.generate_key().decode()


def is_sealed(value: str) -> bool:
    return value.startswith(SEALED_PREFIX)


class Keyring:
    """The master keys in use: the first seals, each opens."""

    def __init__(self, keys: Sequence[str], source: str) -> None:
        keys = [k.strip() for k in keys if k.strip()]
        if not keys:
            raise MasterKeyError(f"{source} holds no key")
        try:
            self._fernet = MultiFernet([Fernet(k) for k in keys])
        except (ValueError, binascii.Error):
            raise MasterKeyError(
                f"{source}: not a master key (expected 32 bytes in url-safe base64, as "
                "`crm-api secrets new-key` prints)"
            ) from None
        self.keys = tuple(keys)
        self.source = source
        # Opening costs an HMAC and an AES pass; the dispatcher opens the same few secrets for every
        # delivery, so what was opened is kept (bounded, and only in this process's memory).
        self._opened: dict[str, str] = {}

    def seal(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode()).decode()

    def open(self, token: str) -> str:
        plain = self._opened.get(token)
        if plain is None:
            try:
                plain = self._fernet.decrypt(token.encode()).decode()
            except InvalidToken:
                raise MasterKeyError(
                    f"a stored secret does not open with the master key from {self.source}: the key is not "
                    "the one the database was sealed with (during a rotation, give old and new, "
                    "comma-separated)"
                ) from None
            if len(self._opened) >= _OPENED_KEEP:
                self._opened.clear()
            self._opened[token] = plain
        return plain

    def open_stored(self, value: str) -> str:
        """A stored value opened; one stored in the clear before sealing existed is returned as it is (every
        start seals those, see vault.py, but a process may read one first)."""
        return self.open(value) if is_sealed(value) else value

    def reseal(self, token: str) -> str:
        """The same secret sealed with the first key (opened with whichever key opens it)."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken:
            raise MasterKeyError(
                f"a stored secret opens with none of the keys given ({self.source})"
            ) from None

    def led_by(self, key: str) -> Keyring:
        """This keyring with ``key`` first: it seals with ``key`` and still opens with every other."""
        return Keyring([key, *(k for k in self.keys if k != key.strip())], f"{self.source} and the new key")


def read_key_file(path: Path) -> Keyring:
    try:
        text = path.read_text()
    except OSError as exc:
        raise MasterKeyError(f"cannot read the master key file {path}: {exc.strerror}") from None
    return Keyring([line for line in text.splitlines() if not line.startswith("#")], str(path))


def write_key_file(path: Path, keys: Sequence[str]) -> None:
    private_files.replace(path, "".join(f"{k}\n" for k in keys))


def embedded_key_file(settings: Settings) -> Path | None:
    """With the embedded database and no key configured: the data dir's key file, made on first use."""
    if settings.secret_key is not None or settings.secret_key_file is not None or settings.database_url:
        return None
    path = settings.data_dir / KEY_FILE
    if not path.exists():
        private_files.create(path, new_key() + "\n")  # False: another process made it first, fine
    return path


def key_file(settings: Settings) -> Path | None:
    """The file the keys come from (``secret_key_file`` or the embedded default), or None for the env."""
    return settings.secret_key_file or embedded_key_file(settings)


def load(settings: Settings) -> Keyring:
    if settings.secret_key is not None:
        return Keyring(settings.secret_key.get_secret_value().split(","), "CRM_SECRET_KEY")
    path = key_file(settings)
    if path is None:
        raise MasterKeyError(
            "CRM_SECRET_KEY is required with CRM_DATABASE_URL: it seals the secrets the database holds. "
            "Make one with `crm-api secrets new-key` and give every crm-api process the same."
        )
    return read_key_file(path)
