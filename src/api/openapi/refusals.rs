//! The refusals the layers in front of every handler give, added to each operation of the
//! document in one place: the Host/Origin guard (`origin.rs`), authentication and the request
//! rate (`auth.rs`, `limits.rs`), each in its route's family's shape (`api::family`), the
//! body and query extractors (`json/`) and the `{id}` parser answer before a handler runs,
//! so an annotation listing only its handler's own answers still says all a client can get
//! (generated clients and fuzzers take an unlisted status as a broken server).

use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, Response, ResponseBuilder};

use crate::api::family::Family;

/// The family an operation is in, by the `tag` of its annotation.
fn family_of(op: &Operation) -> Family {
    Family::of_tag(op.tags.iter().flatten().map(String::as_str).next())
}

/// Adds, to each operation that does not list them itself, the statuses its route's shared
/// layers answer with.
pub(super) fn describe(doc: &mut OpenApi) {
    for op in super::operations(doc) {
        for (status, schema, description) in refusals(op) {
            let response = ResponseBuilder::new()
                .description(description)
                .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name(schema))).build())
                .build();
            op.responses.responses.entry(status.to_string()).or_insert(RefOr::<Response>::T(response));
        }
    }
}

/// The statuses `op`'s shared layers may answer: its status, the error schema and why.
fn refusals(op: &Operation) -> Vec<(u16, &'static str, &'static str)> {
    let family = family_of(op);
    let shape = family.error_schema();
    let params = op.parameters.iter().flatten();
    let has_id = params.clone().any(|p| p.parameter_in == ParameterIn::Path && p.name == "id");
    let has_query = params.clone().any(|p| p.parameter_in == ParameterIn::Query);
    // The routes that take an `Idempotency-Key` are those that submit a job.
    let submits = params.clone().any(|p| p.parameter_in == ParameterIn::Header && p.name == "Idempotency-Key");
    let body = op.request_body.as_ref();
    let json_body = body.is_some_and(|b| b.content.contains_key("application/json"));
    // An operation that names no requirement of its own needs the document's key; `security(())`
    // (one empty requirement) marks the routes open without one.
    let keyed = op.security.as_ref().is_none_or(|s| !s.iter().any(|r| *r == Default::default()));
    // Every route, the probes and the studio's page included, is behind the guard.
    let mut out = vec![(
        403,
        shape,
        "`forbidden_host` or `forbidden_origin`: a `Host` the box does not answer to (not its address or name, nor in \
         `server.allowed_hosts`; a browser opening a page by such a name gets a short HTML page instead), or a web \
         page's `Origin` that is not the box's own nor in `server.allowed_origins`",
    )];
    if keyed {
        out.push((401, shape, "`missing_key` or `invalid_key`: no key, or one the box does not know (revoked)"));
        out.push((
            429,
            shape,
            "`rate_limited`: this key sent more than `limits.requests_per_second`; `Retry-After` says when to send again",
        ));
    }
    if has_id {
        out.push((400, "ErrorBody", "`invalid_param`: `id` is not one record's (not a ULID, or a name records share)"));
        out.push((404, "ErrorBody", "`not_found`: no such record among those this key may see"));
    }
    if has_query || body.is_some() {
        out.push((400, shape, "a value that cannot be read: the refusal names its field and what it takes"));
    }
    if body.is_some() {
        out.push((413, shape, "`body_too_large`: the body is past `limits.max_body_bytes`"));
    }
    if submits {
        out.push((
            422,
            shape,
            "`idempotency_key_reused`: the `Idempotency-Key` came before with another request; the refusal names its job",
        ));
        out.push((507, shape, "`disk_low`: the data dir's disk has less free than `limits.min_free_disk_bytes`"));
    }
    if family == Family::Native && json_body {
        out.push((415, "ErrorBody", "`unsupported_media_type`: a body sent as another type than `application/json`"));
    }
    out
}
