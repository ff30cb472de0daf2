"""The email field's fast path (``crm_api.emails``) answers exactly as ``EmailStr`` does, for the addresses
it answers for, and leaves every other address (and its error) to ``EmailStr``."""

from __future__ import annotations

import random

import pytest
from pydantic import BaseModel, EmailStr, TypeAdapter, ValidationError

from crm_api.contacts.schemas import ContactCreate
from crm_api.emails import Email, plain

REFERENCE = TypeAdapter(EmailStr)
FAST = TypeAdapter(Email)

PLAIN = [
    "b1@example.com",
    "First.Last@Example.COM",
    "a+tag@sub.domain.co.uk",
    "x_y-z=1@a-b.io",
    "UPPER@UPPER.ORG",
    "0@0.museum",
    f"{'a' * 64}@example.com",
]
"""Addresses the fast path must answer for (so a fast path that never answers fails here)."""

ODD = [
    "",
    "a",
    "@example.com",
    "a@",
    "a@b",
    "a@localhost",
    "a@example.test",
    "a@foo.local",
    "a@foo.onion",
    "a@1.2.3.4",
    "a@[1.2.3.4]",
    "a@example.123",
    "a@-example.com",
    "a@example-.com",
    "a@ab--cd.com",
    "a@xn--bcher-kva.ch",
    "a@xn--x.com",
    ".a@example.com",
    "a.@example.com",
    "a..b@example.com",
    "Info@Example.com",
    "POSTMASTER@example.com",
    "Sales@example.com",
    " a@example.com ",
    "a@example.com\n",
    "Fred Bloggs <fred@example.com>",
    '"quoted"@example.com',
    "a b@example.com",
    "a@exa mple.com",
    "josé@example.com",
    "a@bücher.de",
    "a@EXAMPLE.com.",
    "a!#$%&'*/?^`{|}~@example.com",
    f"{'a' * 65}@example.com",
    f"a@{'b' * 63}.com",
    f"a@{'b' * 64}.com",
    "a@" + ".".join(["b" * 60] * 4) + ".com",
    "a@" + ".".join(["b" * 49] * 5) + ".com",
    "a@\uff25\uff38\uff21\uff2d\uff30\uff2c\uff25.com",  # fullwidth EXAMPLE
    "a@example.com@example.com",
    "a@example..com",
    "a@.example.com",
]


def reference(value: str) -> str | None:
    try:
        return REFERENCE.validate_python(value)
    except ValidationError:
        return None


def corpus() -> list[str]:
    rng = random.Random(18)
    alphabet = "aZ9._+=-!#%'~@ é\u00a0ÅxX0-.."
    out = PLAIN + ODD
    for _ in range(20_000):
        local = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))
        labels = [
            "".join(rng.choice("abcXYZ019-é") for _ in range(rng.randint(0, 6)))
            for _ in range(rng.randint(1, 4))
        ]
        out.append(f"{local}@{'.'.join(labels)}")
    for _ in range(20_000):  # near the fast path's edges: mostly plain, now and then not
        local = "".join(
            rng.choice("aZ9._+=-" + "!é " * (rng.random() < 0.1)) for _ in range(rng.randint(1, 8))
        )
        labels = [
            "".join(rng.choice("abXY09-") for _ in range(rng.randint(1, 5))) for _ in range(rng.randint(1, 3))
        ]
        tld = rng.choice(["com", "IO", "x", "c0m", "test", "local", "arpa", "xn--p1ai", "org."])
        out.append(f"{local}@{'.'.join([*labels, tld])}")
    return out


def test_plain_addresses_take_the_fast_path_and_match_email_str() -> None:
    for value in PLAIN:
        assert plain(value) is not None, value
        assert plain(value) == reference(value), value


@pytest.mark.parametrize("value", ODD)
def test_other_addresses_are_left_to_email_str(value: str) -> None:
    fast = plain(value)
    assert fast is None or fast == reference(value), value
    try:
        expected: object = REFERENCE.validate_python(value)
    except ValidationError as exc:
        with pytest.raises(ValidationError) as got:
            FAST.validate_python(value)
        assert got.value.errors()[0]["msg"] == exc.errors()[0]["msg"]
    else:
        assert FAST.validate_python(value) == expected


def test_fast_path_agrees_with_email_str_on_generated_addresses() -> None:
    answered = 0
    for value in corpus():
        fast = plain(value)
        if fast is not None:
            answered += 1
            assert fast == reference(value), value
        assert (reference(value) is None) == _refused(value), value
    assert answered > 1_000  # the corpus exercises the fast path, not only the fallback


def _refused(value: str) -> bool:
    try:
        FAST.validate_python(value)
    except ValidationError:
        return True
    return False


def test_the_contact_schema_uses_it_with_the_same_declaration() -> None:
    class Reference(BaseModel):
        email: EmailStr | None = None

    assert ContactCreate.model_validate({"email": "A.B@Example.COM"}).email == "A.B@example.com"
    assert ContactCreate.model_validate({"email": " Info@Example.com "}).email == "info@example.com"
    with pytest.raises(ValidationError):
        ContactCreate.model_validate({"email": "a@localhost"})
    schema = ContactCreate.model_json_schema()["properties"]["email"]
    assert schema["anyOf"][0] == Reference.model_json_schema()["properties"]["email"]["anyOf"][0]
