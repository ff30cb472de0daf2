"""The email field of write bodies: pydantic's ``EmailStr``, with a fast answer for the plain addresses that
make up nearly every real file (an import of 100,000 contacts spent an eighth of its CPU in
``email_validator``).

The fast path only answers for a subset that ``email_validator`` (as pydantic calls it) accepts unchanged
but for the domain's case: a dot-atom local part of common ASCII characters, not a mailbox name it
lower-cases (``Info@``); a domain of ASCII letter-digit-hyphen labels with an alphabetic top-level label,
no two hyphens in a row (Punycode, and the labels RFC 5890 refuses), outside the special-use domains;
within the length limits. Its answer is what ``email_validator`` gives for such an address: the local part
as written, the domain in lower case. Anything else (Unicode, quoting, display names, surrounding spaces,
other punctuation, too long, an IP or special-use domain) goes to ``EmailStr``'s own validation, with its
own errors. The schema and the OpenAPI declaration are ``EmailStr``'s.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import email_validator
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES
from pydantic import EmailStr, ValidatorFunctionWrapHandler, WrapValidator

_PLAIN = re.compile(
    r"(?P<local>[A-Za-z0-9_+=-]+(?:\.[A-Za-z0-9_+=-]+)*)"
    r"@(?P<domain>(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})"
)
"""Addresses the fast path answers for (the limits on the whole and the local part are checked apart)."""
_CASE_INSENSITIVE = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)
"""Local parts ``email_validator`` lower-cases (``Info@``, ``Postmaster@``): left to it."""
MAX_LENGTH = 254
MAX_LOCAL = 64


def plain(value: str) -> str | None:
    """The normalised address when ``value`` is a plain one (see the module's docstring), else None."""
    m = _PLAIN.fullmatch(value)
    if m is None or len(value) > MAX_LENGTH:
        return None
    local, domain = m.group("local", "domain")
    if len(local) > MAX_LOCAL or "--" in domain or local.lower() in _CASE_INSENSITIVE:
        return None
    domain = domain.lower()
    for special in email_validator.SPECIAL_USE_DOMAIN_NAMES:  # read as email_validator reads it
        if domain == special or domain.endswith("." + special):
            return None
    return f"{local}@{domain}"


def _validate(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    if type(value) is str and (fast := plain(value)) is not None:
        return fast
    return handler(value)


Email = Annotated[EmailStr, WrapValidator(_validate)]
"""``EmailStr``, answered without ``email_validator`` for plain addresses."""
