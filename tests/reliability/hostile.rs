//! Hostile input against a running app: oversized and deeply nested bodies, invalid UTF-8, SQL
//! and shell metacharacters, control and bidirectional characters, confusables, thousands of
//! identifiers, path tricks, wrong methods and media types, huge headers, repeated parameters.
//! Each is answered with a 4xx (an `ErrorBody` whenever the request reached gdprd), never a 5xx,
//! and none changes a single row. Property tests add arbitrary JSON bodies.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{ALL_PERMISSIONS, TestApp, seed};
use crate::support::{RawResponse, quiet_settings, raw, snapshot};

/// What a case must get.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// This status, with an `ErrorBody`.
    Status(u16),
    /// Any 4xx, with an `ErrorBody`.
    ClientError,
    /// A 4xx answered by the HTTP layer before the request reaches gdprd (a malformed request
    /// line or oversized headers): no `ErrorBody` can be expected.
    Refused,
    /// A read: 200 that finds nothing, or a 4xx `ErrorBody`.
    FindsNothing,
}

struct Case {
    name: String,
    request: Vec<u8>,
    expect: Expect,
}

/// Builds a raw HTTP/1.1 request.
struct Raw {
    method: String,
    target: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
    body: Option<Vec<u8>>,
}

impl Raw {
    fn new(method: &str, target: &str) -> Raw {
        Raw::with_target(method, target.as_bytes())
    }

    /// A request whose target is any bytes at all.
    fn with_target(method: &str, target: &[u8]) -> Raw {
        Raw {
            method: method.into(),
            target: target.to_vec(),
            headers: Vec::new(),
            body: None,
        }
    }

    fn header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Raw {
        self.headers.push((name.into(), value.into()));
        self
    }

    fn bearer(self, token: &str) -> Raw {
        self.header("Authorization", format!("Bearer {token}"))
    }

    fn json(self, body: &Value) -> Raw {
        self.body("application/json", serde_json::to_vec(body).unwrap())
    }

    fn body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Raw {
        if !content_type.is_empty() {
            self.headers
                .push(("Content-Type".into(), content_type.as_bytes().to_vec()));
        }
        self.body = Some(body.into());
        self
    }

    fn bytes(self) -> Vec<u8> {
        let mut out = format!("{} ", self.method).into_bytes();
        out.extend_from_slice(&self.target);
        out.extend_from_slice(b" HTTP/1.1\r\nHost: gdprd\r\n");
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        let chunked = self
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"));
        if let (Some(body), false) = (&self.body, chunked) {
            out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
        }
        out.extend_from_slice(b"Connection: close\r\n\r\n");
        if let Some(body) = self.body {
            out.extend_from_slice(&body);
        }
        out
    }
}

const SQL: &[&str] = &[
    "' OR '1'='1",
    "1; DROP TABLE gdpr_requests; --",
    "x' UNION SELECT secret_hash::text FROM api_clients --",
    "'); DELETE FROM subjects; --",
    "\\'; TRUNCATE demo.external_contacts CASCADE; --",
    "$$; DROP SCHEMA demo CASCADE; $$",
];

const SHELL: &[&str] = &[
    "$(touch /tmp/gdprd-hostile-pwned)",
    "`touch /tmp/gdprd-hostile-pwned`",
    "; touch /tmp/gdprd-hostile-pwned",
    "| touch /tmp/gdprd-hostile-pwned &&",
    "${IFS}cat${IFS}/etc/passwd",
];

/// Characters that must never reach the database or the logs as they are.
const CONTROL: &[&str] = &[
    "\u{0}",
    "\u{7}",
    "\u{1b}[31m",
    "\u{7f}",
    "\u{85}",
    "\r\n",
    "\u{8}",
];

/// Look-alikes and invisible characters: accepted where free text is, but matching nobody else.
const TRICKY: &[&str] = &[
    "Ana\u{202e}aicraG",
    "\u{410}na Garc\u{456}a",
    "Ana\u{200b}Garc\u{ed}a",
    "Ana\u{2066}Garc\u{ed}a\u{2069}",
    "%",
    "_",
    "*",
    ".*",
    "\\",
    "ana%",
    "\u{feff}",
];

fn cases(token: &str, request_id: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut add = |name: String, raw: Raw, expect: Expect| {
        cases.push(Case {
            name,
            request: raw.bytes(),
            expect,
        });
    };
    let post = || Raw::new("POST", "/api/v2/gdpr/requests").bearer(token);
    let get_request = |subject: Value| json!({"requestType": "GDPR_GET", "subject": subject});

    // Size and shape.
    let huge = "a".repeat(300 * 1024);
    add(
        "a body over the limit".into(),
        post().json(&get_request(json!({"name": huge}))),
        Expect::Status(413),
    );
    let mut chunked = Vec::new();
    for _ in 0..40 {
        chunked.extend_from_slice(format!("{:x}\r\n", 8192).as_bytes());
        chunked.extend_from_slice(&[b' '; 8192]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    add(
        "a chunked body over the limit".into(),
        post()
            .header("Transfer-Encoding", "chunked")
            .body("application/json", chunked),
        Expect::Status(413),
    );
    let deep = format!(
        "{{\"requestType\":\"GDPR_GET\",\"subject\":{{\"emailAddresses\":{}{}}}}}",
        "[".repeat(50_000),
        "]".repeat(50_000)
    );
    add(
        "deeply nested arrays".into(),
        post().body("application/json", deep),
        Expect::Status(400),
    );
    let nested = format!("{}1{}", "{\"a\":".repeat(20_000), "}".repeat(20_000));
    add(
        "deeply nested unknown objects".into(),
        post().body("application/json", nested),
        Expect::Status(400),
    );
    for (name, body) in [
        ("an empty body", b"".to_vec()),
        ("JSON null", b"null".to_vec()),
        ("a JSON array", b"[]".to_vec()),
        ("a huge number", b"1e999999".to_vec()),
        (
            "invalid UTF-8 in a string",
            b"{\"requestType\":\"GDPR_GET\",\"subject\":{\"name\":\"\xff\xfe\xc3\"}}".to_vec(),
        ),
        ("invalid UTF-8 outside strings", b"\xff\xfe{}".to_vec()),
        (
            "a UTF-16 body",
            "{\"requestType\":\"GDPR_GET\"}"
                .encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect(),
        ),
        (
            "a repeated key",
            br#"{"requestType":"GDPR_GET","requestType":"GDPR_DELETE","subject":{"name":"Ana"}}"#
                .to_vec(),
        ),
        (
            "a lone surrogate",
            br#"{"requestType":"GDPR_GET","subject":{"name":"\ud800"}}"#.to_vec(),
        ),
        (
            "trailing garbage",
            br#"{"requestType":"GDPR_GET","subject":{"name":"Ana"}} DROP"#.to_vec(),
        ),
    ] {
        add(
            name.into(),
            post().body("application/json", body),
            Expect::Status(400),
        );
    }
    for field in ["emailAddresses", "phoneNumbers", "addresses"] {
        let values: Vec<String> = (0..10_000).map(|i| format!("{i}@x.io")).collect();
        add(
            format!("10,000 {field}"),
            post().json(&get_request(json!({ field: values }))),
            Expect::Status(400),
        );
    }
    let records: Vec<Value> = (0..10_001)
        .map(|i| json!({"userId": format!("u{i}")}))
        .collect();
    add(
        "10,001 index records".into(),
        Raw::new("POST", "/api/v2/gdpr/index/subjects")
            .bearer(token)
            .json(&Value::Array(records)),
        Expect::Status(400),
    );
    add(
        "NDJSON with invalid UTF-8".into(),
        Raw::new("POST", "/api/v2/gdpr/index/subjects")
            .bearer(token)
            .body("application/x-ndjson", b"{\"userId\":\"u\xff\"}\n".to_vec()),
        Expect::Status(400),
    );

    // Hostile values in every field of a request: control characters are refused, ids that
    // are not in the index are unknown (404), and nothing is interpreted.
    let mut values: Vec<String> = Vec::new();
    values.extend(CONTROL.iter().map(|c| format!("ana{c}garcia")));
    values.extend(SQL.iter().map(|s| s.to_string()));
    values.extend(SHELL.iter().map(|s| s.to_string()));
    values.extend(TRICKY.iter().map(|s| format!("u-{s}")));
    for value in &values {
        let shown = value.escape_debug().to_string();
        let subjects = [
            ("userId", json!({"userId": value})),
            ("externalContactId", json!({"externalContactId": value})),
            (
                "dialerContactId.id",
                json!({"dialerContactId": {"id": value, "contactListId": "list-1"}}),
            ),
            (
                "dialerContactId.contactListId",
                json!({"dialerContactId": {"id": "dc-1", "contactListId": value}}),
            ),
            (
                "journeyCustomer.id",
                json!({"journeyCustomer": {"type": "cookie", "id": value}}),
            ),
            (
                "journeyCustomer.type",
                json!({"journeyCustomer": {"type": value, "id": "cookie-1"}}),
            ),
        ];
        for (field, subject) in subjects {
            add(
                format!("{field} = {shown}"),
                post().json(&get_request(subject)),
                Expect::ClientError,
            );
        }
        add(
            format!("requestType = {shown}"),
            post().json(&json!({"requestType": value, "subject": {"name": "Ana"}})),
            Expect::Status(400),
        );
        add(
            format!("socialHandle.type = {shown}"),
            post().json(&get_request(
                json!({"socialHandle": {"type": value, "value": "x"}}),
            )),
            Expect::Status(400),
        );
        add(
            format!("replacementTerms[0].type = {shown}"),
            post().json(&json!({
                "requestType": "GDPR_UPDATE",
                "subject": {"emailAddresses": ["ana.garcia@example.com"]},
                "replacementTerms": [{"type": value, "existingValue": "a@b.c", "updatedValue": "d@e.f"}],
            })),
            Expect::Status(400),
        );
        // A control byte cannot even be sent in a header: the HTTP layer refuses the request.
        let header_ok = !value.bytes().any(|b| b < 0x20 || b == 0x7f);
        add(
            format!("Idempotency-Key = {shown}"),
            post()
                .header("Idempotency-Key", value.as_bytes().to_vec())
                .json(&json!({"requestType": "GDPR_DELETE", "subject": {"name": "Ana"}})),
            if header_ok {
                Expect::ClientError
            } else {
                Expect::Refused
            },
        );
        add(
            format!("DELETE index record {shown}"),
            Raw::new(
                "DELETE",
                &format!(
                    "/api/v2/gdpr/index/subjects/users/{}",
                    percent_encoding::utf8_percent_encode(
                        value,
                        percent_encoding::NON_ALPHANUMERIC
                    )
                ),
            )
            .bearer(token),
            if value.chars().any(char::is_control) {
                Expect::Status(400)
            } else {
                Expect::Status(404)
            },
        );
    }
    for control in CONTROL {
        let value = format!("ana{control}garcia");
        let shown = value.escape_debug().to_string();
        let fields = [
            ("name", json!({"name": value})),
            (
                "emailAddresses",
                json!({"emailAddresses": [format!("{value}@example.com")]}),
            ),
            (
                "phoneNumbers",
                json!({"phoneNumbers": [format!("555{control}0100001")]}),
            ),
            (
                "addresses",
                json!({"addresses": [format!("12 Calle{control}Mayor")]}),
            ),
            ("externalId", json!({"externalId": value})),
            (
                "socialHandle.value",
                json!({"socialHandle": {"type": "TWITTER", "value": value}}),
            ),
        ];
        for (field, subject) in fields {
            // Tabs and line breaks are white space in names and addresses; the rest is refused.
            let free_text = matches!(field, "name" | "addresses") && *control == "\r\n";
            if !free_text {
                add(
                    format!("subject.{field} = {shown}"),
                    post().json(&get_request(subject)),
                    Expect::Status(400),
                );
            }
        }
        add(
            format!("name = {shown}"),
            post().json(&json!({
                "requestType": "GDPR_GET", "name": value,
                "subject": {"emailAddresses": ["nobody@example.com"]},
            })),
            Expect::Status(400),
        );
        add(
            format!("replacementTerms[0].updatedValue = {shown}"),
            post().json(&json!({
                "requestType": "GDPR_UPDATE",
                "subject": {"emailAddresses": ["nobody@example.com"]},
                "replacementTerms": [{"type": "EMAIL", "existingValue": "nobody@example.com",
                                      "updatedValue": format!("{value}@example.com")}],
            })),
            Expect::Status(400),
        );
        add(
            format!("PUT index record name = {shown}"),
            Raw::new("PUT", "/api/v2/gdpr/index/subjects/users/u-hostile")
                .bearer(token)
                .json(&json!({"userId": "u-hostile", "name": format!("Ana{control}Bad\u{0}")})),
            Expect::Status(400),
        );
    }

    // Searches: every type, every hostile value. Nothing is found, nothing breaks.
    for search_type in gdprd::index::SearchType::ALL {
        for value in SQL.iter().chain(SHELL).chain(TRICKY).chain(CONTROL) {
            let query = serde_urlencoded::to_string([
                ("searchType", search_type.as_str()),
                ("searchValue", value),
            ])
            .unwrap();
            add(
                format!(
                    "search {} for {}",
                    search_type.as_str(),
                    value.escape_debug()
                ),
                Raw::new("GET", &format!("/api/v2/gdpr/subjects?{query}")).bearer(token),
                Expect::FindsNothing,
            );
        }
    }

    // Paths.
    let long_id = "a".repeat(10_000);
    for (target, expect) in [
        ("/api/v2/gdpr/requests/../../../etc/passwd".to_owned(), 404),
        (
            "/api/v2/gdpr/requests/%2e%2e%2f%2e%2e%2fetc%2fpasswd".into(),
            404,
        ),
        ("/api/v2/gdpr/requests/..%2F..%2Fsubjects".into(), 404),
        (format!("/api/v2/gdpr/requests/{request_id}%2Fresults"), 404),
        (format!("/api/v2/gdpr/requests/{request_id}%00"), 404),
        ("/api/v2/gdpr/requests/%ff%fe".into(), 400),
        (format!("/api/v2/gdpr/requests/{long_id}"), 404),
        ("//api/v2/gdpr/requests".into(), 404),
        ("/api/v2/gdpr/requests/%20".into(), 404),
        ("/api/v2/gdpr/./requests".into(), 404),
        (
            format!(
                "/api/v2/gdpr/requests/{request_id}/results/..%2F..%2Fetc%2Fpasswd?expires=9999999999&signature=00"
            ),
            403,
        ),
        (
            format!("/api/v2/gdpr/requests/{request_id}/results/%2e%2e?expires=1&signature=zz"),
            403,
        ),
        (
            format!(
                "/api/v2/gdpr/requests/{request_id}/results/x.zip?expires=99999999999999999999999&signature=00"
            ),
            403,
        ),
        (
            "/api/v2/gdpr/index/subjects/users/..%2F..%2Fexternal".into(),
            404,
        ),
        ("/api/v2/gdpr/index/subjects/..%2Fusers/x".into(), 404),
        (
            "/api/v2/gdpr/index/subjects/users%2F..%2Fusers/x".into(),
            404,
        ),
    ] {
        let method = if target.starts_with("/api/v2/gdpr/index") {
            "DELETE"
        } else {
            "GET"
        };
        add(
            format!("{method} {}", target.chars().take(80).collect::<String>()),
            Raw::new(method, &target).bearer(token),
            Expect::Status(expect),
        );
    }
    add(
        "PUT a record at a traversing key".into(),
        Raw::new(
            "PUT",
            "/api/v2/gdpr/index/subjects/journeyCustomers/..%2F..%2F",
        )
        .bearer(token)
        .json(&json!({"journeyCustomer": {"type": "cookie", "id": "c-1"}})),
        Expect::Status(400),
    );
    add(
        "a path of 70,000 characters".into(),
        Raw::new(
            "GET",
            &format!("/api/v2/gdpr/requests/{}", "a".repeat(70_000)),
        )
        .bearer(token),
        Expect::Refused,
    );
    add(
        "raw bytes that are not UTF-8 in the path".into(),
        Raw::with_target("GET", b"/api/v2/gdpr/requests/\xff\xfe").bearer(token),
        Expect::Refused,
    );

    // Methods.
    for (method, target) in [
        ("PATCH", "/api/v2/gdpr/requests"),
        ("DELETE", "/api/v2/gdpr/requests"),
        ("PUT", "/api/v2/gdpr/subjects"),
        ("GET", "/oauth/token"),
        ("TRACE", "/api/v2/gdpr/requests"),
        ("BREW", "/api/v2/gdpr/requests"),
        ("DELETE", "/api/v2/gdpr/index/subjects"),
    ] {
        add(
            format!("{method} {target}"),
            Raw::new(method, target).bearer(token),
            Expect::Status(405),
        );
    }
    add(
        format!("POST /api/v2/gdpr/requests/{request_id}"),
        Raw::new("POST", &format!("/api/v2/gdpr/requests/{request_id}"))
            .bearer(token)
            .json(&json!({})),
        Expect::Status(405),
    );

    // Media types.
    let body = serde_json::to_vec(&get_request(json!({"name": "Ana"}))).unwrap();
    for content_type in [
        "",
        "text/plain",
        "application/xml",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "application/json-seq",
    ] {
        add(
            format!("Content-Type {content_type:?}"),
            post().body(content_type, body.clone()),
            Expect::Status(415),
        );
    }
    add(
        "index records as CSV".into(),
        Raw::new("POST", "/api/v2/gdpr/index/subjects")
            .bearer(token)
            .body("text/csv", "userId\nu-1\n"),
        Expect::Status(415),
    );
    add(
        "a token request as JSON".into(),
        Raw::new("POST", "/oauth/token").json(&json!({"grant_type": "client_credentials"})),
        Expect::Status(415),
    );

    // Headers.
    add(
        "a bearer token of 100 KB".into(),
        Raw::new("GET", "/api/v2/gdpr/requests").bearer(&"t".repeat(100_000)),
        Expect::Status(401),
    );
    add(
        "a token in SQL".into(),
        Raw::new("GET", "/api/v2/gdpr/requests").bearer("' OR '1'='1"),
        Expect::Status(401),
    );
    add(
        "Basic credentials of 50 KB".into(),
        Raw::new("POST", "/oauth/token")
            .header("Authorization", format!("Basic {}", "QUFB".repeat(12_500)))
            .body(
                "application/x-www-form-urlencoded",
                "grant_type=client_credentials",
            ),
        Expect::Status(401),
    );
    add(
        "client credentials in SQL".into(),
        Raw::new("POST", "/oauth/token").body(
            "application/x-www-form-urlencoded",
            "grant_type=client_credentials&client_id=%27%20OR%201%3D1--&client_secret=x",
        ),
        Expect::Status(401),
    );
    add(
        "a token form that is not UTF-8".into(),
        Raw::new("POST", "/oauth/token").body(
            "application/x-www-form-urlencoded",
            b"grant_type=client_credentials\xff&client_id=\xfe".to_vec(),
        ),
        Expect::ClientError,
    );
    add(
        "grant_type in SQL".into(),
        Raw::new("POST", "/oauth/token").body(
            "application/x-www-form-urlencoded",
            "grant_type=client_credentials%27--",
        ),
        Expect::Status(400),
    );
    add(
        "an Idempotency-Key of 5,000 characters".into(),
        post()
            .header("Idempotency-Key", "k".repeat(5_000))
            .json(&get_request(json!({"name": "Ana"}))),
        Expect::Status(400),
    );
    add(
        "an Idempotency-Key that is not ASCII".into(),
        post()
            .header("Idempotency-Key", b"key-\xff\xfe".to_vec())
            .json(&get_request(json!({"name": "Ana"}))),
        Expect::Status(400),
    );
    add(
        "a correlation id in SQL".into(),
        Raw::new("GET", "/api/v2/gdpr/nothing")
            .header("ININ-Correlation-Id", "'; DROP TABLE gdpr_jobs; --"),
        Expect::Status(404),
    );
    add(
        "a header of 1 MB".into(),
        Raw::new("GET", "/api/v2/gdpr/requests")
            .bearer(token)
            .header("X-Padding", "p".repeat(1024 * 1024)),
        Expect::Refused,
    );
    let mut many = Raw::new("GET", "/api/v2/gdpr/requests").bearer(token);
    for i in 0..500 {
        many = many.header(&format!("X-Header-{i}"), "v");
    }
    add("500 headers".into(), many, Expect::Refused);
    add(
        "two Content-Length headers".into(),
        Raw::new("POST", "/api/v2/gdpr/requests")
            .bearer(token)
            .header("Content-Length", "5")
            .body("application/json", body.clone()),
        Expect::Refused,
    );

    // Query strings.
    for query in [
        "searchType=EMAIL&searchType=NAME&searchValue=a@b.c",
        "searchType=EMAIL&searchValue=a@b.c&searchValue=c@d.e",
        "search%54ype=EMAIL&searchType=NAME&searchValue=a",
        "searchType=NAME&searchValue=%00",
        "searchType=NAME&searchValue=%ff%fe",
        "searchType=EMAIL%00&searchValue=a@b.c",
        "searchType=NAME&searchValue=Ana&pageSize=-1",
        "searchType=NAME&searchValue=Ana&pageSize=99999999999999999999999",
        "searchType=NAME&searchValue=Ana&pageNumber=0",
        "searchType=NAME&searchValue=Ana&pageNumber=NaN",
    ] {
        add(
            format!("GET /api/v2/gdpr/subjects?{query}"),
            Raw::new("GET", &format!("/api/v2/gdpr/subjects?{query}")).bearer(token),
            Expect::Status(400),
        );
    }
    let long_value = "a".repeat(10_000);
    add(
        "a search value of 10,000 characters".into(),
        Raw::new(
            "GET",
            &format!("/api/v2/gdpr/subjects?searchType=NAME&searchValue={long_value}"),
        )
        .bearer(token),
        Expect::Status(400),
    );
    for query in ["pageSize=1&pageSize=100", "pageSize=1e3", "pageNumber=-5"] {
        add(
            format!("GET /api/v2/gdpr/requests?{query}"),
            Raw::new("GET", &format!("/api/v2/gdpr/requests?{query}")).bearer(token),
            Expect::Status(400),
        );
    }
    add(
        "deleteConfirmed twice".into(),
        Raw::new(
            "POST",
            "/api/v2/gdpr/requests?deleteConfirmed=true&deleteConfirmed=false",
        )
        .bearer(token)
        .json(&json!({"requestType": "GDPR_DELETE", "subject": {"emailAddresses": ["ana.garcia@example.com"]}})),
        Expect::Status(400),
    );
    add(
        "deleteConfirmed in SQL".into(),
        Raw::new("POST", "/api/v2/gdpr/requests?deleteConfirmed=true%27--")
            .bearer(token)
            .json(&json!({"requestType": "GDPR_DELETE", "subject": {"emailAddresses": ["ana.garcia@example.com"]}})),
        Expect::Status(400),
    );
    cases
}

/// Why `answer` does not meet `expect`, if it does not.
fn verdict(expect: Expect, answer: &RawResponse) -> Result<(), String> {
    let status = answer.status;
    if status >= 500 {
        return Err(format!("a server error: {status} {}", answer.text()));
    }
    match expect {
        Expect::Status(s) if status != s => Err(format!("{status}, not {s}: {}", answer.text())),
        Expect::Refused if !(400..500).contains(&status) => {
            Err(format!("{status}, not a 4xx: {}", answer.text()))
        }
        Expect::Refused => Ok(()),
        Expect::FindsNothing if status == 200 => match answer.json() {
            Some(body) if body["entities"] == json!([]) && body["total"] == 0 => Ok(()),
            _ => Err(format!("found something: {}", answer.text())),
        },
        _ if !(400..500).contains(&status) => {
            Err(format!("{status}, not a 4xx: {}", answer.text()))
        }
        _ => error_body(answer),
    }
}

/// A Genesys `ErrorBody` whose `status` is the response's and whose `contextId` is its
/// `ININ-Correlation-Id`.
fn error_body(answer: &RawResponse) -> Result<(), String> {
    let body = answer
        .json()
        .ok_or_else(|| format!("not JSON: {}", answer.text()))?;
    let correlation = answer.header("inin-correlation-id").unwrap_or_default();
    let content_type = answer.header("content-type").unwrap_or_default();
    let ok = content_type.starts_with("application/json")
        && body["status"] == answer.status
        && body["code"].as_str().is_some_and(|c| !c.is_empty())
        && body["message"].as_str().is_some_and(|m| !m.is_empty())
        && !correlation.is_empty()
        && body["contextId"] == correlation
        && body["details"].is_array()
        && body["errors"].is_array();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "not an ErrorBody: {content_type} {}",
            answer.text()
        ))
    }
}

#[sqlx::test]
async fn hostile_requests_get_a_4xx_error_body_and_change_nothing(pool: PgPool) {
    seed(&pool, 5).await;
    let app = TestApp::spawn_with_options(pool.clone(), quiet_settings(), None).await;
    let token = app.token("demo", ALL_PERMISSIONS).await;
    let existing = app
        .accepted(
            &token,
            json!({"requestType": "GDPR_GET", "subject": {"emailAddresses": ["ana.garcia@example.com"]}}),
        )
        .await;
    let request_id = existing["id"].as_str().unwrap();
    let before = snapshot(&pool).await;

    let address = app.address.trim_start_matches("http://");
    let cases = cases(&token, request_id);
    let mut failures = Vec::new();
    for case in &cases {
        let answer = raw(address, case.request.clone()).await;
        if let Err(why) = verdict(case.expect, &answer) {
            failures.push(format!("{}: {why}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} hostile requests were mishandled:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    let after = snapshot(&pool).await;
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b, a, "table {} changed", b.0);
    }
    assert_eq!(before.len(), after.len());
    assert!(!std::path::Path::new("/tmp/gdprd-hostile-pwned").exists());
    println!(
        "figures: {} hostile requests, all refused, no row changed",
        cases.len()
    );
}

/// Arbitrary JSON, with a bias towards the shape of a request so that validation is reached.
fn json_value() -> impl Strategy<Value = Value> {
    let text = prop_oneof![
        Just("GDPR_GET".to_owned()),
        Just("GDPR_DELETE".to_owned()),
        Just("GDPR_UPDATE".to_owned()),
        Just("GDPR_EXPORT".to_owned()),
        Just("EMAIL".to_owned()),
        Just("PHONE".to_owned()),
        Just("ana.garcia@example.com".to_owned()),
        Just("(555) 010-0001".to_owned()),
        "\\PC{0,24}",
        any::<String>(),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        text.prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        let key = prop_oneof![
            Just("requestType".to_owned()),
            Just("subject".to_owned()),
            Just("name".to_owned()),
            Just("replacementTerms".to_owned()),
            Just("emailAddresses".to_owned()),
            Just("phoneNumbers".to_owned()),
            Just("addresses".to_owned()),
            Just("userId".to_owned()),
            Just("externalContactId".to_owned()),
            Just("dialerContactId".to_owned()),
            Just("journeyCustomer".to_owned()),
            Just("socialHandle".to_owned()),
            Just("externalId".to_owned()),
            Just("type".to_owned()),
            Just("id".to_owned()),
            Just("value".to_owned()),
            Just("existingValue".to_owned()),
            Just("updatedValue".to_owned()),
            "\\PC{0,12}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(key, inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A request-shaped body: a known type and a subject of arbitrary identifiers.
fn request_body() -> impl Strategy<Value = Value> {
    let request_type = prop_oneof![
        Just(json!("GDPR_GET")),
        Just(json!("GDPR_EXPORT")),
        Just(json!("GDPR_UPDATE")),
        Just(json!("GDPR_DELETE")),
    ];
    (request_type, json_value(), json_value()).prop_map(|(t, subject, terms)| {
        json!({"requestType": t, "subject": subject, "replacementTerms": terms})
    })
}

#[sqlx::test]
async fn arbitrary_json_bodies_never_get_a_server_error(pool: PgPool) {
    seed(&pool, 3).await;
    let app = TestApp::spawn_with_options(pool, quiet_settings(), None).await;
    let token = app.token("demo", ALL_PERMISSIONS).await;
    let runtime = tokio::runtime::Handle::current();
    let address = app.address.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let mut runner = TestRunner::new(Config {
            cases: 64,
            failure_persistence: None,
            ..Config::default()
        });
        let strategy = (prop_oneof![json_value(), request_body()], any::<bool>());
        runner
            .run(&strategy, |(body, confirmed)| {
                let target = if confirmed {
                    "/api/v2/gdpr/requests?deleteConfirmed=true"
                } else {
                    "/api/v2/gdpr/requests"
                };
                let request = Raw::new("POST", target).bearer(&token).json(&body).bytes();
                let host = address.trim_start_matches("http://").to_owned();
                let answer = runtime.block_on(raw(&host, request));
                let ok = match answer.status {
                    200 | 202 => Ok(()),
                    400..=499 => error_body(&answer),
                    other => Err(format!("{other}: {}", answer.text())),
                };
                ok.map_err(TestCaseError::fail)
            })
            .map_err(|e| e.to_string())
    })
    .await
    .unwrap();
    if let Err(e) = outcome {
        panic!("{e}");
    }
}
