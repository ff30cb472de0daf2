"""The summary and description of each route a resource gets (``router.build_router``), written from its
spec so every resource reads the same and says what is its own (its filters, sorts, upsert key)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

from .custom_fields import enforce as custom_fields
from .spec import ResourceSpec


class RouteDoc(TypedDict):
    """A route decorator's keyword arguments ``summary`` and ``description``."""

    summary: str
    description: str


@dataclass(frozen=True)
class Doc:
    summary: str
    description: str

    def route(self) -> RouteDoc:
        return {"summary": self.summary, "description": self.description}


_PAGES = (
    "Pages hold `limit` objects (50 by default, at most 200); pass `next_cursor` back as `cursor` for the "
    "next page, with the same filters and sort, until `has_more` is false. Pages are keyset-based: they "
    "stay stable while objects are written and cost the same however deep."
)
_SYNC = (
    "`updated_after` sorts by `updated_at` ascending and includes archived objects, so a mirror can "
    "follow every change."
)
_IF_MATCH = (
    "With `If-Match` (the `ETag` of a read) it applies only if the object is still at that version: "
    "otherwise 412 and nothing changes."
)


def _filters(spec: ResourceSpec) -> str:
    names = ", ".join(f"`{p.name}`" for p in spec.query_params)
    return f"Filters: {names}." if names else ""


def _sorts(spec: ResourceSpec) -> str:
    sorts = ", ".join(f"`{s}`" for s in spec.sorts)
    extra = " or `custom_fields.<name>`" if custom_fields.applies(spec) else ""
    return f"`sort` by {sorts}{extra} (`-` for descending; `-created_at` by default)."


def _events(spec: ResourceSpec, action: str) -> str:
    return f"Emits `{spec.object}.{action}`."


def list_doc(spec: ResourceSpec) -> Doc:
    searched = f" `q` finds a case-insensitive part of the {spec.searched}." if spec.searched else ""
    return Doc(
        f"List {spec.many}",
        " ".join(
            s
            for s in (
                f"Live {spec.many} (archived ones too with `include_archived=true`), newest first.",
                _sorts(spec) + searched,
                _filters(spec),
                _SYNC if any(p.name == "updated_after" for p in spec.query_params) else "",
                _PAGES,
            )
            if s
        ),
    )


def search_doc(spec: ResourceSpec) -> Doc:
    hops = ", ".join(f"`{r}.<field>`" for r in spec.relations)
    relations = f" One relation hop is allowed: {hops}." if hops else ""
    return Doc(
        f"Search {spec.many} with the filter grammar",
        f'{spec.many.capitalize()} matching `filter`: leaves `{{"field", "op", "value"}}` with the '
        "operators eq, neq, lt, lte, gt, gte, in, nin, between, contains, starts_with and is_null, "
        "combined by `and`, `or` and `not` (8 levels, 100 nodes at most). Fields are the columns, "
        f"`custom_fields.<name>` (typed by its definition) and ids and timestamps.{relations} An unknown "
        f"field or operator is a 422 naming the node. Sort and pages as in the list. Reads only: it needs "
        f"`{spec.name}:read`.",
    )


def create_doc(spec: ResourceSpec) -> Doc:
    return Doc(
        f"Create {spec.one}",
        f'Answers 201 with the new {spec.noun}, its `Location` and its version as `ETag` (`"1"`). Fields '
        "left out take their defaults. Ids it refers to must name live objects of the workspace (422 naming "
        "the field); a value taken by another object where it must be unique is a 409 naming the field. "
        + _events(spec, "created"),
    )


def batch_doc(spec: ResourceSpec) -> Doc:
    key = spec.natural_key
    by = f"its `{key.field}`, else its external id" if key else "its external id"
    return Doc(
        f"Create or upsert up to 500 {spec.many}",
        "Each item is checked as a create body and fails alone: the answer is 200 with one result per "
        'item, in order, `{"status": 201, "object": ...}` or `{"status": 4xx, "error": <problem>}` whose '
        f"paths point into the item (`/items/3/...`). With `mode: upsert` an item matching {by} updates "
        "that object (200). Two items claiming the same key or object: the later is a 409. The batch runs "
        "in a fixed handful of statements, in one transaction.",
    )


def get_doc(spec: ResourceSpec) -> Doc:
    merged = (
        f" A {spec.noun} merged into another answers 301 with `Location` and `merged_into` naming the "
        "survivor."
        if spec.field_type("merged_into") is not None
        else ""
    )
    return Doc(
        f"Get {spec.one}",
        f"The {spec.noun}, archived or not, with its version as `ETag`; 404 for an id of another "
        f"workspace, as for one that does not exist.{merged}",
    )


def update_doc(spec: ResourceSpec) -> Doc:
    return Doc(
        f"Update {spec.one}",
        "Changes the fields sent: fields left out stay as they are, `null` clears one (a field with a "
        "default goes back to it), and lists and objects (tags, custom_fields, external_ids) are replaced "
        f"whole. {_IF_MATCH} A request that changes nothing answers 200 with no new version and no event. "
        + _events(spec, "updated")
        + " Its `data.previous` holds the old values.",
    )


def archive_doc(spec: ResourceSpec) -> Doc:
    return Doc(
        f"Archive {spec.one}",
        "A soft delete: sets `archived_at` and answers with the archived object. It stays readable by id, "
        "leaves lists and searches (unless `include_archived=true`), no longer counts for uniqueness and "
        f"cannot be referred to by new writes; restore brings it back. {_IF_MATCH} Archiving an archived "
        f"{spec.noun} answers 200 unchanged. " + _events(spec, "archived"),
    )


def restore_doc(spec: ResourceSpec) -> Doc:
    return Doc(
        f"Restore an archived {spec.noun}",
        f"Clears `archived_at`. {_IF_MATCH} Restoring a live {spec.noun} answers 200 unchanged. "
        + _events(spec, "restored"),
    )


_UPSERT = (
    "with the body of an update; when it creates, the body must also pass the create rules. Concurrent "
    "upserts of one key queue, so they end as one object."
)


def upsert_by_key_doc(spec: ResourceSpec) -> Doc:
    key = spec.natural_key
    assert key is not None
    compared = f" ({key.compared})" if key.compared else ""
    return Doc(
        f"Create or update the {spec.noun} with this {key.field}",
        f"Creates the {spec.noun} (201, `Location`) or updates the live one whose `{key.field}` is the "
        f"path's{compared} (200), {_UPSERT} A body naming another `{key.field}` is a 422.",
    )


def upsert_by_external_id_doc(spec: ResourceSpec) -> Doc:
    return Doc(
        f"Create or update the {spec.noun} with this external id",
        f"Creates the {spec.noun} (201, `Location`) or updates the one holding the external id "
        f"`{{source}}: {{external_id}}` (200), {_UPSERT} The body's `external_ids` are merged into the "
        "stored ones; one naming another id for this source is a 422.",
    )


def upsert_by_custom_field_doc(spec: ResourceSpec) -> Doc:
    return Doc(
        f"Create or update the {spec.noun} holding this value of a unique custom field",
        f"`name` is a live unique custom field of {spec.many}; the value is read per the field's type (a "
        f"number field reads `42` as a number). Creates the {spec.noun} (201, `Location`) or updates the "
        f"live one holding the value (200), {_UPSERT} The body's `custom_fields` are merged into the "
        "stored ones. An unknown or non-unique field is a 422 at `/path/name`, a value that does not fit "
        "its type one at `/path/value`.",
    )
