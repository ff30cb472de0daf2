// A TypeScript integration as a front-end team would write it: types generated from openapi/openapi.json by
// openapi-typescript (default flags), requests through openapi-fetch. tests/test_ts_client.py generates
// schema.d.ts, compiles this file with `tsc --strict` and runs it against a live crm-api (CRM_URL, CRM_KEY).
// It exits non-zero on the first expectation that fails.
import createClient from "openapi-fetch";
import type { components, paths } from "./schema.js";

type Contact = components["schemas"]["Contact"];
type Problem = components["schemas"]["Problem"];

const baseUrl = process.env.CRM_URL;
const key = process.env.CRM_KEY;
if (!baseUrl || !key) {
  throw new Error("set CRM_URL and CRM_KEY");
}

function expect(condition: unknown, what: string): asserts condition {
  if (!condition) {
    throw new Error(`expected ${what}`);
  }
}

const crm = createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${key}` } });
const run = crypto.randomUUID().slice(0, 8);

// Create with only what matters: tags, custom_fields, marketing_consent... take their server defaults.
const idempotencyKey = crypto.randomUUID();
const created = await crm.POST("/v1/contacts", {
  params: { header: { "Idempotency-Key": idempotencyKey } },
  body: { email: `ada-${run}@example.com`, first_name: "Ada", lifecycle_stage: "lead" },
});
expect(created.response.status === 201, `201 on create, got ${created.response.status}`);
expect(created.data !== undefined, "the created contact");
const contact: Contact = created.data;
expect(contact.tags.length === 0 && contact.marketing_consent === false, "the server's defaults");
expect(created.response.headers.get("Location") === `/v1/contacts/${contact.id}`, "Location");

// The same request with the same Idempotency-Key replays the first answer.
const replay = await crm.POST("/v1/contacts", {
  params: { header: { "Idempotency-Key": idempotencyKey } },
  body: { email: `ada-${run}@example.com`, first_name: "Ada", lifecycle_stage: "lead" },
});
expect(replay.data?.id === contact.id, "the replayed contact");
expect(replay.response.headers.get("Idempotent-Replayed") === "true", "Idempotent-Replayed");

// Get it with its version as ETag.
const fetched = await crm.GET("/v1/contacts/{id}", { params: { path: { id: contact.id } } });
const etag = fetched.response.headers.get("ETag");
expect(fetched.data?.email === contact.email && etag === '"1"', `ETag "1", got ${etag}`);

// PATCH with If-Match: applies to that version only.
const patched = await crm.PATCH("/v1/contacts/{id}", {
  params: { path: { id: contact.id }, header: { "If-Match": etag } },
  body: { lifecycle_stage: "customer", tags: ["vip"] },
});
expect(patched.data?.version === 2 && patched.data.lifecycle_stage === "customer", "version 2");
expect(patched.response.headers.get("ETag") === '"2"', "the new ETag");

// Again with the old version: 412, read as a typed problem document.
const stale = await crm.PATCH("/v1/contacts/{id}", {
  params: { path: { id: contact.id }, header: { "If-Match": etag } },
  body: { first_name: "Late" },
});
expect(stale.response.status === 412 && stale.error !== undefined, "412 for a stale If-Match");
const conflict: Problem = stale.error;
expect(conflict.code === "precondition_failed" && conflict.status === 412, `a problem, got ${conflict.code}`);
expect(stale.response.headers.get("Content-Type") === "application/problem+json", "problem+json");

// A validation error names the field.
const invalid = await crm.POST("/v1/contacts", { body: { email: "not an email" } });
expect(invalid.response.status === 422 && invalid.error !== undefined, "422 for a bad email");
const refused: Problem = invalid.error;
expect(refused.errors?.[0]?.path === "/email", `the field named, got ${JSON.stringify(refused.errors)}`);
expect(typeof refused.request_id === "string" && refused.request_id.length > 0, "the request id");

// List two pages of one, following next_cursor.
const second = await crm.POST("/v1/contacts", { body: { email: `bob-${run}@example.com` } });
expect(second.response.status === 201 && second.data !== undefined, "a second contact");
const first = await crm.GET("/v1/contacts", { params: { query: { limit: 1 } } });
expect(first.data?.has_more === true && typeof first.data.next_cursor === "string", "a first page");
const next = await crm.GET("/v1/contacts", {
  params: { query: { limit: 1, cursor: first.data.next_cursor } },
});
expect(next.data !== undefined && next.data.has_more === false, "a last page");
const seen = [...first.data.data, ...next.data.data].map((c) => c.id).sort();
expect(JSON.stringify(seen) === JSON.stringify([contact.id, second.data.id].sort()), "both contacts, once each");

console.log("ts client: ok");
