use std::sync::Arc;

use gdprd::catalog::Catalog;
use gdprd::config::{HttpSettings, WorkerSettings};
use gdprd::index::Normalizer;
use gdprd::outbound::{GuardSettings, Outbound};
use gdprd::requests::store::ResultLinks;
use gdprd::secrets::ServerKey;
use gdprd::state::{AppState, Shared};
use gdprd::worker::Worker;
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::net::TcpListener;

pub const ALL_PERMISSIONS: &[&str] = &[
    "gdpr:subject:view",
    "gdpr:request:add",
    "gdpr:request:view",
    "gdpr:index:write",
];

pub struct TestApp {
    pub address: String,
    pub pool: PgPool,
    pub http: Client,
    /// Stops the background worker when the test ends, so that it hands back its database
    /// connections (the per-test database cannot be dropped while they are held).
    _stop_worker: tokio_util::sync::DropGuard,
}

pub struct TestClient {
    pub id: String,
    pub secret: String,
}

/// Worker settings for tests: quick polling and retries.
/// The tests' receivers listen on loopback over plain HTTP.
pub fn loopback_allowed() -> GuardSettings {
    GuardSettings {
        outbound_allow_private: true,
        outbound_allow_http: true,
    }
}

pub fn fast_worker() -> WorkerSettings {
    WorkerSettings {
        poll_interval_ms: 50,
        retry_base_ms: 50,
        retry_max_ms: 400,
        outbound: loopback_allowed(),
        ..WorkerSettings::default()
    }
}

impl TestApp {
    /// The API and a background worker, as `gdprd serve` runs them.
    pub async fn spawn(pool: PgPool) -> TestApp {
        TestApp::spawn_with_options(pool, HttpSettings::default(), Some(fast_worker())).await
    }

    pub async fn spawn_with(pool: PgPool, settings: HttpSettings) -> TestApp {
        TestApp::spawn_with_options(pool, settings, Some(fast_worker())).await
    }

    /// The API alone (`gdprd serve --no-worker`).
    pub async fn spawn_without_worker(pool: PgPool) -> TestApp {
        TestApp::spawn_with_options(pool, HttpSettings::default(), None).await
    }

    pub async fn spawn_with_options(
        pool: PgPool,
        settings: HttpSettings,
        worker: Option<WorkerSettings>,
    ) -> TestApp {
        let catalog = Catalog::load(std::path::Path::new("catalog/demo.toml")).unwrap();
        TestApp::spawn_with_catalog(pool, settings, worker, catalog).await
    }

    /// An app whose catalog is `catalog` (checked against the database first).
    pub async fn spawn_with_catalog(
        pool: PgPool,
        settings: HttpSettings,
        worker: Option<WorkerSettings>,
        catalog: Catalog,
    ) -> TestApp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let worker = worker.map(|mut w| {
            w.callback_base_url.get_or_insert(address.clone());
            w
        });
        catalog.validate(&pool).await.unwrap();
        catalog.check_outbound(&loopback_allowed()).unwrap();
        let catalog = Arc::new(catalog);
        let key = ServerKey::load_or_create(&pool).await.unwrap();
        let normalizer = Normalizer::new("US").unwrap();
        let worker_settings = worker.clone().unwrap_or_default();
        let state = AppState::new(Shared {
            pool: pool.clone(),
            search: gdprd::db::search_pool(&pool, 4, std::time::Duration::from_secs(5)).unwrap(),
            normalizer: normalizer.clone(),
            links: ResultLinks {
                public_url: address.clone(),
                key: key.clone(),
                ttl: chrono::Duration::seconds(settings.results_url_ttl_secs as i64),
            },
            catalog: catalog.clone(),
            max_attempts: worker_settings.job_max_attempts,
            rate_limits: gdprd::ratelimit::RateLimits::new(settings.rate_limits()),
            // Checks URLs as the worker will call them.
            outbound: Outbound::new(
                worker
                    .as_ref()
                    .map_or_else(loopback_allowed, |w| w.outbound.clone()),
            ),
            tokens: gdprd::auth::cache::TokenCache::default(),
            settings: Arc::new(settings),
        });
        tokio::spawn(gdprd::http::serve(listener, state, std::future::pending()));
        gdprd::outbound::install_crypto_provider();
        let stop = tokio_util::sync::CancellationToken::new();
        if let Some(settings) = worker {
            let worker = Worker::new(pool.clone(), catalog, key, normalizer, settings);
            tokio::spawn(worker.run(stop.clone()));
        }
        TestApp {
            address,
            pool,
            http: Client::new(),
            _stop_worker: stop.drop_guard(),
        }
    }

    /// Starts a background worker with the demo catalog and `settings` (for an app spawned
    /// without one); it stops when the guard is dropped.
    pub async fn start_worker(&self, settings: WorkerSettings) -> tokio_util::sync::DropGuard {
        let catalog = Catalog::load(std::path::Path::new("catalog/demo.toml")).unwrap();
        let key = ServerKey::load_or_create(&self.pool).await.unwrap();
        let normalizer = Normalizer::new("US").unwrap();
        let worker = Worker::new(
            self.pool.clone(),
            Arc::new(catalog),
            key,
            normalizer,
            settings,
        );
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(worker.run(stop.clone()));
        stop.drop_guard()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn create_client(&self, org: &str, permissions: &[&str]) -> TestClient {
        let permissions: Vec<String> = permissions.iter().map(|p| p.to_string()).collect();
        let created = gdprd::auth::clients::create(&self.pool, org, "test client", &permissions)
            .await
            .unwrap();
        TestClient {
            id: created.client_id.to_string(),
            secret: created.client_secret,
        }
    }

    pub async fn token_for(&self, client: &TestClient) -> String {
        let response = self
            .http
            .post(self.url("/oauth/token"))
            .basic_auth(&client.id, Some(&client.secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// A token of a new client of `org` holding `permissions`.
    pub async fn token(&self, org: &str, permissions: &[&str]) -> String {
        let client = self.create_client(org, permissions).await;
        self.token_for(&client).await
    }

    pub async fn search(&self, token: &str, search_type: &str, value: &str) -> Response {
        self.http
            .get(self.url("/api/v2/gdpr/subjects"))
            .bearer_auth(token)
            .query(&[("searchType", search_type), ("searchValue", value)])
            .send()
            .await
            .unwrap()
    }

    /// The entities found by a search that must succeed.
    pub async fn found(&self, token: &str, search_type: &str, value: &str) -> Vec<Value> {
        let response = self.search(token, search_type, value).await;
        assert_eq!(response.status(), StatusCode::OK, "search {search_type}");
        let body: Value = response.json().await.unwrap();
        body["entities"].as_array().unwrap().clone()
    }

    /// Page `number` of `size` of a search that must succeed: the whole listing.
    pub async fn search_page(
        &self,
        token: &str,
        search_type: &str,
        value: &str,
        size: u32,
        number: u32,
    ) -> Value {
        let response = self
            .http
            .get(self.url("/api/v2/gdpr/subjects"))
            .bearer_auth(token)
            .query(&[
                ("searchType", search_type),
                ("searchValue", value),
                ("pageSize", &size.to_string()),
                ("pageNumber", &number.to_string()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "search {search_type}");
        response.json().await.unwrap()
    }

    pub async fn write_index(&self, token: &str, records: &Value) -> Response {
        self.http
            .post(self.url("/api/v2/gdpr/index/subjects"))
            .bearer_auth(token)
            .json(records)
            .send()
            .await
            .unwrap()
    }

    /// Writes `records` to the index of the token's organization, which must succeed.
    pub async fn index(&self, token: &str, records: Value) {
        let response = self.write_index(token, &records).await;
        let status = response.status();
        let body = response.text().await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

/// Asserts a Genesys ErrorBody with `status` and `code`, and returns it.
pub async fn expect_error(response: Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status().as_u16(), status, "status");
    let correlation = response
        .headers()
        .get("inin-correlation-id")
        .expect("ININ-Correlation-Id header")
        .to_str()
        .unwrap()
        .to_owned();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["contextId"], correlation.as_str(), "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(
        body["details"].is_array() && body["errors"].is_array(),
        "{body}"
    );
    assert!(body["messageParams"].is_object(), "{body}");
    body
}

/// Ana García as two members of one merge set, her namesake Ana Garcia, an employee and a
/// journey visitor.
pub fn people() -> Value {
    json!([
        {
            "externalContactId": "ec-ana-1",
            "canonicalContactId": "ec-ana-1",
            "name": "Ana García",
            "emailAddresses": ["ana.garcia@example.com"],
            "phoneNumbers": ["(555) 010-0001"],
            "addresses": ["12 Calle Mayor, Madrid"],
            "socialHandle": {"type": "TWITTER", "value": "@AnaG"},
            "externalId": "CRM-000001"
        },
        {
            "externalContactId": "ec-ana-2",
            "canonicalContactId": "ec-ana-1",
            "name": "Ana García",
            "emailAddresses": ["ana.g@mail.example"],
            "phoneNumbers": ["+1 555 010 0001"]
        },
        {
            "externalContactId": "ec-other-ana",
            "name": "Ana Garcia",
            "emailAddresses": ["ana.garcia@example.org"],
            "phoneNumbers": ["555-010-0002"]
        },
        {
            "userId": "u-jonas",
            "name": "Jonas Müller",
            "emailAddresses": ["jonas.mueller@corp.example"],
            "phoneNumbers": ["(555) 010-0003"]
        },
        {
            "journeyCustomer": {"type": "cookie", "id": "anagarciacookie0000000000a"},
            "emailAddresses": ["ana.garcia@example.com"]
        },
        {
            "dialerContactId": {"id": "dc-1", "contactListId": "list-1"},
            "name": "Søren Ørsted",
            "phoneNumbers": ["+44 20 7946 0018"],
            "socialHandle": {"type": "WHATSAPP", "value": "+44 20 7946 0018"}
        }
    ])
}

/// The ids of the records in a search result, sorted.
pub fn ids(entities: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = entities
        .iter()
        .map(|e| {
            for key in ["userId", "externalContactId"] {
                if let Some(id) = e[key].as_str() {
                    return id.to_owned();
                }
            }
            if let Some(id) = e["dialerContactId"]["id"].as_str() {
                return id.to_owned();
            }
            e["journeyCustomer"]["id"]
                .as_str()
                .unwrap_or("?")
                .to_owned()
        })
        .collect();
    ids.sort();
    ids
}

impl TestApp {
    pub async fn submit(&self, token: &str, body: &Value, delete_confirmed: bool) -> Response {
        let mut request = self
            .http
            .post(self.url("/api/v2/gdpr/requests"))
            .bearer_auth(token)
            .json(body);
        if delete_confirmed {
            request = request.query(&[("deleteConfirmed", "true")]);
        }
        request.send().await.unwrap()
    }

    /// Submits a request that must be accepted (202) and returns it.
    pub async fn accepted(&self, token: &str, body: Value) -> Value {
        let delete = body["requestType"] == "GDPR_DELETE";
        let response = self.submit(token, &body, delete).await;
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, StatusCode::ACCEPTED, "{text}");
        serde_json::from_str(&text).unwrap()
    }

    pub async fn request(&self, token: &str, id: &str) -> Value {
        let response = self
            .http
            .get(self.url(&format!("/api/v2/gdpr/requests/{id}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    /// Submits a request that must be accepted (202), waits until it is COMPLETED or ERROR (see
    /// [`TestApp::finished`]) and returns it as it then stands.
    pub async fn completed(&self, token: &str, body: Value) -> Value {
        let accepted = self.accepted(token, body).await;
        self.finished(token, accepted["id"].as_str().unwrap()).await
    }

    /// Polls a request until it is COMPLETED or ERROR (at most 60 s) and returns it.
    pub async fn finished(&self, token: &str, id: &str) -> Value {
        for _ in 0..600 {
            let request = self.request(token, id).await;
            if request["status"] == "COMPLETED" || request["status"] == "ERROR" {
                return request;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("request {id} did not finish within 60 s");
    }
}

/// Fills the demo organization with `n` seeded people (the story people first).
pub async fn seed(pool: &PgPool, n: u64) {
    let args = gdprd::config::SeedArgs {
        subjects: n,
        seed: 1,
        org: "demo".into(),
        force: false,
        quiet: true,
    };
    gdprd::seed::run(pool, &Normalizer::new("US").unwrap(), &args)
        .await
        .unwrap();
}
