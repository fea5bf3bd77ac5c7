//! The OpenAPI 3.1 description of the API, generated from the code: each handler's
//! `#[utoipa::path]` and the wire models' `ToSchema`, collected by the router that serves them
//! ([`super::documented`]), so that no route exists without its description. Served at
//! `/openapi.yaml`, `/openapi.json` and `/docs`, and committed as `openapi.yaml` at the root of
//! the repository (`tests/openapi.rs` fails when the two differ).

use std::borrow::Cow;
use std::future::ready;

use axum::Router;
use axum::http::header;
use axum::response::Html;
use axum::routing::{MethodRouter, get};
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{ArrayBuilder, ArrayItems, Object, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{
    ClientCredentials, Flow, HttpAuthScheme, HttpBuilder, OAuth2, Scopes, SecurityScheme,
};
use utoipa::openapi::{
    ContentBuilder, KnownFormat, OpenApi as Document, Ref, RefOr, Response, ResponseBuilder,
    SchemaFormat,
};
use utoipa::{Modify, OpenApi, PartialSchema, ToResponse, ToSchema};
use utoipa_scalar::Scalar;

use crate::index::SubjectKind;
use crate::notifications::model::Payload;
use crate::requests::model::GdprRequest;
use crate::wire::{EntityListing, ErrorBody, GdprSubject};

/// The listing of subject search, as handlers' annotations name it.
pub type GdprSubjectEntityListing = EntityListing<GdprSubject>;
/// The listing of requests, as handlers' annotations name it.
pub type GdprRequestEntityListing = EntityListing<GdprRequest>;

/// The whole document, as served and committed.
pub fn spec() -> Document {
    finish(super::documented(|_, route| route, 0, 0).into_openapi())
}

/// The document as YAML: the text of the committed `openapi.yaml`.
pub fn to_yaml(doc: &Document) -> String {
    doc.to_yaml()
        .expect("the OpenAPI document is plain data and always serializes")
}

/// `GET /openapi.yaml`, `GET /openapi.json` and `GET /docs` (an API reference page: Scalar,
/// whose script the browser loads from its CDN).
pub fn routes<S: Clone + Send + Sync + 'static>(doc: &Document) -> Router<S> {
    let yaml = to_yaml(doc);
    let json = doc
        .to_pretty_json()
        .expect("the OpenAPI document is plain data and always serializes");
    let page = Scalar::new(doc.clone())
        .title("gdprd API reference")
        .to_html();
    Router::new()
        .route("/openapi.yaml", text("application/yaml", yaml))
        .route("/openapi.json", text("application/json", json))
        .route("/docs", get(move || ready(Html(page.clone()))))
}

fn text<S: Clone + Send + Sync + 'static>(
    content_type: &'static str,
    body: String,
) -> MethodRouter<S> {
    get(move || ready(([(header::CONTENT_TYPE, content_type)], body.clone())))
}

const DESCRIPTION: &str = "\
A self-hosted service for GDPR data-subject requests (access, portability, rectification, \
erasure) that speaks the wire contract of the Genesys Cloud GDPR API: privacy tooling written \
for Genesys Cloud, Genesys' own SDKs included, works against it by changing the base URL.

**Authentication.** `POST /oauth/token` with the client id and secret (HTTP Basic) and \
`grant_type=client_credentials` answers an access token; send it on every other call as \
`Authorization: Bearer <access_token>`. Each operation names the permission it needs \
(`gdpr:subject:view`, `gdpr:request:add`, `gdpr:request:view`, `gdpr:index:write`).

**Errors.** Every error is a Genesys `ErrorBody`; its `contextId` equals the \
`ININ-Correlation-Id` header that every response carries.

**Rate limits.** Per client and class of operation (token, reads, request creation, index \
writes). Responses carry `inin-ratelimit-count`, `inin-ratelimit-allowed` and \
`inin-ratelimit-reset`; a throttled call gets 429 `too.many.requests` with `Retry-After` and \
`limit`.

**Extensions.** Everything marked **Extension** is not part of Genesys' API (a Genesys client \
ignores it): per-service `jobs`, `error`, `dueDate`, `completedDate`, `relatedRequests` and \
`accessSummary` on requests, the `GDPR_GET` request type, `candidates` on the 409 of the \
ambiguity guard, `callbackUrl` on requests and the notifications it enables, the subject index \
and the health checks.";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "gdprd",
        description = DESCRIPTION,
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    tags(
        (name = "General Data Protection Regulation",
            description = "The Genesys Cloud GDPR API (`/api/v2/gdpr/...`)."),
        (name = "OAuth", description = "Access tokens (OAuth2 client credentials)."),
        (name = "Subject index",
            description = "**Extension.** The records subject searches and requests resolve \
                against: one per known person-record, with the identifiers known for it."),
        (name = "HTTP data services",
            description = "**Extension.** Results that HTTP data services post back for jobs \
                they accepted with 202, signed per Standard Webhooks."),
        (name = "Notifications",
            description = "**Extension.** Completion notifications: status changes of a \
                client's requests POSTed to its endpoint, signed per Standard Webhooks, and \
                the log of their delivery."),
        (name = "Operations", description = "**Extension.** Health checks."),
    ),
    components(schemas(ErrorBody, Payload), responses(
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        PayloadTooLarge,
        UnsupportedMediaType,
        TooManyRequests,
        InternalServerError,
        ServiceUnavailable,
        GatewayTimeout,
    )),
    modifiers(&SecuritySchemes),
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_default();
        components.add_security_scheme(
            "PureCloud OAuth",
            SecurityScheme::OAuth2(OAuth2::with_description(
                [Flow::ClientCredentials(ClientCredentials::new(
                    "/oauth/token",
                    Scopes::new(),
                ))],
                "OAuth2 client credentials, as Genesys names its scheme. Send the token as \
                 `Authorization: Bearer <access_token>`.",
            )),
        );
        components.add_security_scheme(
            "Bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The `access_token` of `POST /oauth/token`."))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "Client credentials",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "The API client's id and secret (`gdprd clients create`), for \
                         `POST /oauth/token`.",
                    ))
                    .build(),
            ),
        );
        for (name, header) in headers() {
            components.headers.insert(name.into(), RefOr::T(header));
        }
    }
}

const CORRELATION_ID: &str = "ININ-Correlation-Id";
const RATE_LIMIT_HEADERS: [&str; 3] = [
    "inin-ratelimit-count",
    "inin-ratelimit-allowed",
    "inin-ratelimit-reset",
];
const RETRY_AFTER: &str = "Retry-After";

/// The response headers every operation shares, as components.
fn headers() -> [(&'static str, Header); 5] {
    let integer = || Object::with_type(Type::Integer);
    [
        (
            CORRELATION_ID,
            required(
                HeaderBuilder::new()
                    .schema(Some(Object::with_type(Type::String)))
                    .description(Some(
                        "The id of this exchange (the `contextId` of an error). A client's own \
                         value (8 to 64 letters, digits, `-` or `_`) is kept.",
                    )),
            ),
        ),
        (
            RATE_LIMIT_HEADERS[0],
            required(
                HeaderBuilder::new()
                    .schema(Some(integer()))
                    .description(Some(
                        "Calls counted against the limit in the current minute.",
                    )),
            ),
        ),
        (
            RATE_LIMIT_HEADERS[1],
            required(
                HeaderBuilder::new()
                    .schema(Some(integer()))
                    .description(Some("The limit, in calls per minute.")),
            ),
        ),
        (
            RATE_LIMIT_HEADERS[2],
            required(
                HeaderBuilder::new()
                    .schema(Some(integer()))
                    .description(Some("Seconds until the limit is fully available again.")),
            ),
        ),
        (
            RETRY_AFTER,
            required(
                HeaderBuilder::new()
                    .schema(Some(integer()))
                    .description(Some("Seconds to wait before retrying.")),
            ),
        ),
    ]
}

/// utoipa's `Header` has no `required` field; OpenAPI's `required` is written through its
/// flattened extensions map instead.
fn required(header: HeaderBuilder) -> Header {
    header
        .extensions(Some(Extensions::from_iter([("required", true)])))
        .build()
}

fn header_ref(name: &str) -> RefOr<Header> {
    RefOr::Ref(Ref::new(format!("#/components/headers/{name}")))
}

/// Completes what the annotations cannot say: the shared response headers, and `readOnly` on
/// read-only array fields.
pub fn finish(mut doc: Document) -> Document {
    read_only_arrays(&mut doc);
    add_shared_headers(&mut doc);
    doc
}

/// utoipa writes the `readOnly` of an array field on its items (its `Array` has no such field);
/// moved up to the field, through the flattened extensions map, it tells that a request body
/// need not carry the field (`jobs` of a `GDPRRequest`).
fn read_only_arrays(doc: &mut Document) {
    let Some(components) = doc.components.as_mut() else {
        return;
    };
    for schema in components.schemas.values_mut() {
        let RefOr::T(Schema::Object(object)) = schema else {
            continue;
        };
        for property in object.properties.values_mut() {
            let RefOr::T(Schema::Array(array)) = property else {
                continue;
            };
            let ArrayItems::RefOrSchema(items) = &mut array.items else {
                continue;
            };
            let read_only = match items.as_mut() {
                RefOr::Ref(item) => item.read_only.take(),
                RefOr::T(Schema::Object(item)) => item.read_only.take(),
                RefOr::T(_) => None,
            };
            if read_only == Some(true) {
                array
                    .extensions
                    .get_or_insert_default()
                    .insert("readOnly".into(), true.into());
            }
        }
    }
}

/// Adds the shared headers to the responses written in the handlers' annotations (the error
/// responses carry theirs already): the correlation id on all, the rate limit headers on every
/// operation but the health checks (the rate limiter wraps every route under `/oauth` and
/// `/api`).
fn add_shared_headers(doc: &mut Document) {
    for (path, item) in doc.paths.paths.iter_mut() {
        let limited = path.starts_with("/api/") || path.starts_with("/oauth/");
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
        ];
        for operation in operations.into_iter().flatten() {
            add_headers(operation, limited);
        }
    }
}

fn add_headers(operation: &mut Operation, limited: bool) {
    for response in operation.responses.responses.values_mut() {
        if let RefOr::T(response) = response {
            response
                .headers
                .insert(CORRELATION_ID.into(), header_ref(CORRELATION_ID));
            if limited {
                for name in RATE_LIMIT_HEADERS {
                    response.headers.insert(name.into(), header_ref(name));
                }
            }
        }
    }
}

/// One reusable error response: an `ErrorBody` with its example. `limited`: the response comes
/// from inside the rate limiter and so carries its headers (errors of the outer middleware, a
/// 500 from a panic, a 503 of load shedding or a 504, may not).
fn error_response(
    status: u16,
    description: &str,
    code: &str,
    message: &str,
    limited: bool,
) -> RefOr<Response> {
    let example = serde_json::json!({
        "message": message,
        "code": code,
        "status": status,
        "contextId": "6c1b5a3e-2d4f-4b8a-9e7c-0f1d2c3b4a59",
        "messageParams": {},
        "details": [],
        "errors": []
    });
    let mut response = ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(ErrorBody::schema_ref()))
                .example(Some(example))
                .build(),
        )
        .build();
    response
        .headers
        .insert(CORRELATION_ID.into(), header_ref(CORRELATION_ID));
    if limited {
        for name in RATE_LIMIT_HEADERS {
            response.headers.insert(name.into(), header_ref(name));
        }
    }
    if status == 429 {
        response
            .headers
            .insert(RETRY_AFTER.into(), header_ref(RETRY_AFTER));
    }
    RefOr::T(response)
}

trait SchemaRef {
    fn schema_ref() -> RefOr<Schema>;
}

impl<T: ToSchema> SchemaRef for T {
    fn schema_ref() -> RefOr<Schema> {
        RefOr::Ref(Ref::from_schema_name(T::name()))
    }
}

/// Declares a reusable error response (`components.responses`), named as the handlers'
/// annotations refer to it.
macro_rules! error_responses {
    ($($name:ident: $status:literal, $limited:literal, $code:literal, $message:literal, $description:literal;)*) => {
        $(
            #[doc = $description]
            pub struct $name;

            impl<'r> ToResponse<'r> for $name {
                fn response() -> (&'r str, RefOr<Response>) {
                    (
                        stringify!($name),
                        error_response($status, $description, $code, $message, $limited),
                    )
                }
            }
        )*
    };
}

error_responses! {
    BadRequest: 400, true, "invalid.value",
        "Value [SOCIAL] is not valid for field type [searchType]. Allowable values are: NAME, ADDRESS, PHONE, EMAIL, TWITTER, INSTAGRAM, FACEBOOK, APPLE_MESSAGES, WHATSAPP, EXTERNAL_ID",
        "The request could not be understood by the server due to malformed syntax \
         (`bad.request`; `invalid.value` names the field in `details`).";
    Unauthorized: 401, true, "authentication.required",
        "No authentication bearer token specified in authorization header.",
        "No authentication bearer token specified in authorization header \
         (`authentication.required`), or the credentials are wrong (`bad.credentials`) or \
         expired (`credentials.expired`).";
    Forbidden: 403, true, "missing.any.permissions",
        "Unable to perform the requested action. You must have at least one of the following permissions assigned: [gdpr:request:add]",
        "You are not authorized to perform the requested action (`missing.any.permissions`; \
         `not.authorized` for a results link that is forged or expired).";
    NotFound: 404, true, "not.found",
        "No GDPR request with that id exists in your organization.",
        "The requested resource was not found (`not.found`).";
    Conflict: 409, true, "conflict",
        "The subject matches 2 different people, and erasing the wrong person cannot be undone. Name the person by id (userId, externalContactId, dialerContactId or journeyCustomer) or add an identifier only they have (an email address or phone number). The candidates are listed in `candidates`.",
        "The request conflicts with the current state of the target resource (`conflict`): \
         a `GDPR_DELETE` whose identifiers match more than one person (the ambiguity guard; \
         **extension:** `candidates` lists them), or an `Idempotency-Key` used before for a \
         different request.";
    PayloadTooLarge: 413, true, "request.entity.too.large",
        "The request is over the size limit. Maximum bytes: 262144",
        "The request is over the size limit (`request.entity.too.large`).";
    UnsupportedMediaType: 415, true, "unsupported.media.type",
        "Unsupported Media Type - the Content-Type text/plain is not accepted here; send application/json.",
        "Unsupported Media Type - Unsupported or incorrect media type, such as an incorrect \
         Content-Type value in the header (`unsupported.media.type`).";
    TooManyRequests: 429, true, "too.many.requests",
        "Rate limit exceeded the maximum. Retry the request in [3] seconds",
        "Rate limit exceeded the maximum (`too.many.requests`; `limit` names it, `Retry-After` \
         says when to retry).";
    InternalServerError: 500, false, "internal.server.error",
        "The server encountered an unexpected condition which prevented it from fulfilling the request.",
        "The server encountered an unexpected condition which prevented it from fulfilling \
         the request (`internal.server.error`).";
    ServiceUnavailable: 503, false, "service.unavailable",
        "Service Unavailable - the database cannot be reached right now; retry later.",
        "Service Unavailable - The server is currently unavailable (`service.unavailable`): \
         its database cannot be reached, or it is at its limit of requests in flight (then \
         with `Retry-After`).";
    GatewayTimeout: 504, false, "request.timeout",
        "The request timed out.",
        "The request timed out (`request.timeout`).";
}

/// Genesys' listing envelopes, named as Genesys names them (`GDPRRequestEntityListing`, …).
impl<T: ToSchema> PartialSchema for EntityListing<T> {
    fn schema() -> RefOr<Schema> {
        let integer = || {
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        };
        let uri = |description: &str| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(description))
        };
        ObjectBuilder::new()
            .description(Some(format!("`{}`: one page of results.", Self::name())))
            .property(
                "entities",
                ArrayBuilder::new().items(RefOr::Ref(Ref::from_schema_name(T::name()))),
            )
            .property("pageSize", integer().minimum(Some(1)))
            .property(
                "pageNumber",
                integer().minimum(Some(1)).description(Some("From 1.")),
            )
            .property("total", integer().minimum(Some(0)))
            .property("pageCount", integer().minimum(Some(1)))
            .property("selfUri", uri("This page (relative URI)."))
            .property("firstUri", uri("The first page."))
            .property("nextUri", uri("The next page (absent on the last)."))
            .property(
                "previousUri",
                uri("The previous page (absent on the first)."),
            )
            .property("lastUri", uri("The last page."))
            .required("entities")
            .required("pageSize")
            .required("pageNumber")
            .required("total")
            .required("pageCount")
            .required("selfUri")
            .required("firstUri")
            .required("lastUri")
            .into()
    }
}

impl<T: ToSchema> ToSchema for EntityListing<T> {
    fn name() -> Cow<'static, str> {
        Cow::Owned(format!("{}EntityListing", T::name()))
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((T::name().into_owned(), T::schema()));
        T::schemas(schemas);
    }
}

/// The `{kind}` of an index record's path.
pub struct IndexRecordKind;

impl PartialSchema for IndexRecordKind {
    fn schema() -> RefOr<Schema> {
        string_enum(SubjectKind::ALL.map(SubjectKind::path_segment))
            .description(Some(
                "**Extension.** The kind of an index record, as a path segment.",
            ))
            .into()
    }
}

impl ToSchema for IndexRecordKind {}

fn string_enum<'a>(values: impl IntoIterator<Item = &'a str>) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.into_iter().collect::<Vec<_>>()))
}

/// Schemas of fields whose Rust type is a plain `String` holding one of a closed set of values.
pub mod schemas {
    use utoipa::openapi::schema::Object;

    use super::string_enum;
    use crate::index::SearchType;

    /// `SocialHandle.type`.
    pub fn social_handle_type() -> Object {
        let social = SearchType::ALL.into_iter().filter(|t| t.is_social());
        string_enum(social.map(SearchType::as_str))
            .description(Some("The network."))
            .build()
    }

    pub fn job_action() -> Object {
        string_enum(["summarize", "export", "update", "delete", "anonymize"])
            .description(Some(
                "What the job does in its service: `summarize` (`GDPR_GET`), `export`, \
                 `update`, `delete` or `anonymize` (erasure, as the catalog fixes it per service).",
            ))
            .build()
    }

    pub fn job_status() -> Object {
        string_enum([
            "QUEUED",
            "RUNNING",
            "AWAITING_CALLBACK",
            "RETRYING",
            "COMPLETED",
            "ERROR",
        ])
        .description(Some(
            "`RETRYING`: an attempt failed and another is scheduled. `AWAITING_CALLBACK`: an \
             HTTP data service accepted the job and will post its result.",
        ))
        .build()
    }

    pub fn notification_state() -> Object {
        string_enum(["PENDING", "DELIVERING", "DELIVERED", "FAILED"])
            .description(Some(
                "`PENDING`: waiting for its first attempt or its next retry; `FAILED`: every \
                 attempt failed.",
            ))
            .build()
    }

    pub fn erasure() -> Object {
        string_enum(["delete", "anonymize"])
            .description(Some("What an erasure does in this service."))
            .build()
    }

    pub fn grant_type() -> Object {
        string_enum(["client_credentials"]).build()
    }
}

/// Example values of the schemas.
pub mod examples {
    use serde_json::{Value, json};

    pub fn subject() -> Value {
        json!({
            "name": "Ana García",
            "emailAddresses": ["ana.garcia@example.com"],
            "phoneNumbers": ["+15550100001"]
        })
    }

    pub fn replacement_term() -> Value {
        json!({"type": "EMAIL", "existingValue": "ana.garcia@example.com", "updatedValue": "ana@example.net"})
    }

    pub fn request() -> Value {
        json!({
            "id": "0193b8f2-6c1e-7a3d-9f42-5b8e1c0d2a47",
            "createdBy": {
                "id": "3f6e2a1b-9c4d-4e8f-a7b2-1d0c9e8f7a65",
                "name": "privacy-tool",
                "selfUri": "/api/v2/oauth/clients/3f6e2a1b-9c4d-4e8f-a7b2-1d0c9e8f7a65"
            },
            "requestType": "GDPR_EXPORT",
            "createdDate": "2026-05-04T09:30:00.000Z",
            "status": "COMPLETED",
            "subject": {"emailAddresses": ["ana.garcia@example.com"]},
            "resultsUrl": "https://gdprd.example.com/api/v2/gdpr/requests/0193b8f2-6c1e-7a3d-9f42-5b8e1c0d2a47/results/export.zip?expires=1777890600&signature=2b7f0c…",
            "resultsUrls": ["https://gdprd.example.com/api/v2/gdpr/requests/0193b8f2-6c1e-7a3d-9f42-5b8e1c0d2a47/results/export.zip?expires=1777890600&signature=2b7f0c…"],
            "selfUri": "/api/v2/gdpr/requests/0193b8f2-6c1e-7a3d-9f42-5b8e1c0d2a47",
            "jobs": [{
                "service": "external_contacts",
                "action": "export",
                "status": "COMPLETED",
                "attempts": 1,
                "matched": 2,
                "deleted": 0,
                "anonymized": 0,
                "updated": 0,
                "retained": 0
            }],
            "dueDate": "2026-06-04T09:30:00.000Z",
            "completedDate": "2026-05-04T09:30:02.412Z"
        })
    }

    pub fn error_body() -> Value {
        json!({
            "message": "subject: the subject names no identifier; give at least one.",
            "code": "invalid.value",
            "status": 400,
            "contextId": "6c1b5a3e-2d4f-4b8a-9e7c-0f1d2c3b4a59",
            "messageParams": {},
            "details": [{"errorCode": "invalid.value", "fieldName": "subject"}],
            "errors": []
        })
    }
}
