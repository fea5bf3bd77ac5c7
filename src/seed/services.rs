//! The demo data services, written one person at a time: each record that the subject index
//! knows (a directory user, an external contact, a dialer contact, a web visitor) is written to
//! its service table and to the index from the same values, so the two always agree. The rest
//! (conversations, journeys, consent) only uses identifiers that the person's index records
//! carry, so that a search finds everything a request must reach.

use chrono::{DateTime, Duration, TimeZone, Utc};
use rand::{Rng, RngCore};
use rand_chacha::ChaCha8Rng;
use uuid::Uuid;

use super::Plan;
use super::batch::{Batch, Table};
use crate::copy::Field;
use crate::index::IndexRecord;
use crate::wire::{DialerContactId, GdprSubject, JourneyCustomer, SocialHandle};

/// Every generated timestamp lies in the year before this instant, never relative to now:
/// the same seed must give the same data whenever it runs.
fn epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::UNIX_EPOCH)
}

const YEAR_SECS: i64 = 365 * 24 * 3600;

pub(super) fn uuid(rng: &mut ChaCha8Rng) -> Uuid {
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// A moment of the year before the epoch.
pub(super) fn past(rng: &mut ChaCha8Rng) -> DateTime<Utc> {
    epoch() - Duration::seconds(rng.random_range(YEAR_SECS / 12..YEAR_SECS))
}

pub(super) fn pick<T: Copy>(rng: &mut ChaCha8Rng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

/// Writes the records of one person, and remembers which identifiers its index records carry.
pub(super) struct Gen<'a> {
    pub plan: &'a Plan,
    pub rng: ChaCha8Rng,
    batch: &'a mut Batch,
    known: Known,
}

/// The identifiers of a person's index records, as written.
#[derive(Default)]
pub(super) struct Known {
    pub names: Vec<String>,
    pub emails: Vec<String>,
    pub phones: Vec<String>,
    pub addresses: Vec<String>,
}

impl Known {
    fn add(&mut self, subject: &GdprSubject) {
        let add = |list: &mut Vec<String>, values: &[String]| {
            for v in values {
                if !list.contains(v) {
                    list.push(v.clone());
                }
            }
        };
        add(&mut self.names, subject.name.as_slice());
        add(
            &mut self.emails,
            subject.email_addresses.as_deref().unwrap_or_default(),
        );
        add(
            &mut self.phones,
            subject.phone_numbers.as_deref().unwrap_or_default(),
        );
        add(
            &mut self.addresses,
            subject.addresses.as_deref().unwrap_or_default(),
        );
    }
}

/// An employee, as the directory holds them.
pub(super) struct DirectoryUser {
    pub id: Uuid,
    pub name: String,
    pub email: String,
    pub phone: Option<String>,
    pub title: &'static str,
    pub department: &'static str,
    pub active: bool,
    pub created_at: DateTime<Utc>,
}

/// An employee who answers conversations.
#[derive(Clone)]
pub(super) struct Agent {
    pub user_id: Uuid,
    pub name: String,
    pub email: String,
}

impl From<&DirectoryUser> for Agent {
    fn from(user: &DirectoryUser) -> Agent {
        Agent {
            user_id: user.id,
            name: user.name.clone(),
            email: user.email.clone(),
        }
    }
}

/// A social handle of an external contact, as written (sometimes with `@`, in mixed case).
pub(super) enum Handle {
    Twitter(String),
    Instagram(String),
    Facebook(String),
    Whatsapp(String),
    /// The opaque id Apple Messages for Business gives a customer.
    AppleMessages(String),
}

impl Handle {
    fn parts(&self) -> (&'static str, &str) {
        match self {
            Handle::Twitter(v) => ("TWITTER", v),
            Handle::Instagram(v) => ("INSTAGRAM", v),
            Handle::Facebook(v) => ("FACEBOOK", v),
            Handle::Whatsapp(v) => ("WHATSAPP", v),
            Handle::AppleMessages(v) => ("APPLE_MESSAGES", v),
        }
    }

    fn column(&self, kind: &'static str) -> Option<&str> {
        let (k, v) = self.parts();
        (k == kind).then_some(v)
    }
}

pub(super) struct Contact {
    pub id: Uuid,
    /// The first member's id, on every member of a merge set.
    pub canonical: Option<Uuid>,
    pub name: Option<String>,
    pub title: Option<&'static str>,
    pub work_email: Option<String>,
    pub personal_email: Option<String>,
    pub work_phone: Option<String>,
    pub cell_phone: Option<String>,
    pub address: Option<String>,
    pub handle: Option<Handle>,
    pub external_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub modified_at: DateTime<Utc>,
}

pub(super) struct DialerContact {
    pub id: Uuid,
    pub list: Uuid,
    pub name: Option<String>,
    pub phone: Option<String>,
    pub alt_phone: Option<String>,
    pub email: Option<String>,
    pub address: Option<String>,
    pub callable: bool,
    pub last_attempt: Option<(DateTime<Utc>, &'static str)>,
}

/// A web visitor, known by a tracking cookie; name, email and phone once they identified
/// themselves in a form.
pub(super) struct Visitor {
    pub cookie: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Channel {
    Voice,
    Chat,
    Email,
    Message,
}

impl Channel {
    fn as_str(self) -> &'static str {
        match self {
            Channel::Voice => "voice",
            Channel::Chat => "chat",
            Channel::Email => "email",
            Channel::Message => "message",
        }
    }

    /// Whether the customer's address on this channel is a phone number (else an email address).
    pub fn by_phone(self) -> bool {
        matches!(self, Channel::Voice | Channel::Message)
    }
}

pub(super) struct Conversation {
    pub id: Uuid,
    pub channel: Channel,
    pub queue: &'static str,
    pub started_at: DateTime<Utc>,
    pub minutes: i64,
    /// Transcript lines, 3 to 6.
    pub lines: usize,
    pub attachment: bool,
    pub agent: Agent,
}

/// What a customer says about themselves in a conversation.
#[derive(Clone, Copy)]
pub(super) struct Mention<'a> {
    pub name: Option<&'a str>,
    pub email: Option<&'a str>,
    pub phone: Option<&'a str>,
    pub address: Option<&'a str>,
}

/// A consent record: one of email, phone or cookie, and what was consented to.
pub(super) struct Consent<'a> {
    pub email: Option<&'a str>,
    pub phone: Option<&'a str>,
    pub cookie: Option<&'a str>,
    pub purpose: &'static str,
    pub granted: bool,
    pub source: &'static str,
    pub at: DateTime<Utc>,
}

impl Consent<'_> {
    /// A consent record for nobody yet; set its email, phone or cookie.
    pub fn of(
        purpose: &'static str,
        granted: bool,
        source: &'static str,
        at: DateTime<Utc>,
    ) -> Self {
        Consent {
            email: None,
            phone: None,
            cookie: None,
            purpose,
            granted,
            source,
            at,
        }
    }
}

const QUEUES: &[&str] = &["Support", "Billing", "Sales", "Retention", "Complaints"];
const DIAL_RESULTS: &[&str] = &["answered", "no-answer", "busy", "voicemail", "callback"];
const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
];
const REFERRERS: &[Option<&str>] = &[
    None,
    None,
    Some("https://www.search.example/?q=customer+service"),
    Some("https://news.example/article/1234"),
    Some("https://social.example/post/98765"),
];
const PAGES: &[&str] = &[
    "https://www.example.com/",
    "https://www.example.com/pricing",
    "https://www.example.com/support",
    "https://www.example.com/contact",
    "https://www.example.com/account",
    "https://www.example.com/blog/winter-offers",
    "https://www.example.com/help/returns",
];
const SEARCHES: &[&str] = &[
    "opening hours",
    "refund policy",
    "pricing",
    "cancel subscription",
    "delivery times",
    "change my address",
];

impl<'a> Gen<'a> {
    pub fn new(plan: &'a Plan, rng: ChaCha8Rng, batch: &'a mut Batch) -> Gen<'a> {
        Gen {
            plan,
            rng,
            batch,
            known: Known::default(),
        }
    }

    pub fn uuid(&mut self) -> Uuid {
        uuid(&mut self.rng)
    }

    /// The identifiers of the person's index records written so far.
    pub fn known(&mut self) -> Known {
        std::mem::take(&mut self.known)
    }

    pub fn agent(&mut self) -> Option<Agent> {
        let agents = &self.plan.agents;
        (!agents.is_empty()).then(|| agents[self.rng.random_range(0..agents.len())].clone())
    }

    /// Validates and normalizes a record exactly as the API does, then stages it for the index.
    fn index(&mut self, subject: GdprSubject) -> anyhow::Result<()> {
        self.known.add(&subject);
        let record = IndexRecord::parse(subject, &self.plan.normalizer)
            .map_err(|e| anyhow::anyhow!("a generated index record is invalid: {e}"))?;
        let id = self.uuid();
        self.batch.index(id, &record)
    }

    pub fn directory_user(&mut self, user: &DirectoryUser) -> anyhow::Result<()> {
        self.batch.row(
            Table::DirectoryUsers,
            &[
                user.id.into(),
                (&user.name).into(),
                (&user.email).into(),
                user.phone.as_ref().into(),
                user.title.into(),
                user.department.into(),
                user.active.into(),
                user.created_at.into(),
            ],
        )?;
        self.index(GdprSubject {
            user_id: Some(user.id.to_string()),
            name: Some(user.name.clone()),
            email_addresses: Some(vec![user.email.clone()]),
            phone_numbers: user.phone.clone().map(|p| vec![p]),
            ..GdprSubject::default()
        })
    }

    /// A contact with a fresh id and no identifiers.
    pub fn contact(&mut self) -> Contact {
        let created_at = past(&mut self.rng);
        let modified_at = created_at + Duration::seconds(self.rng.random_range(0..YEAR_SECS / 12));
        Contact {
            id: self.uuid(),
            canonical: None,
            name: None,
            title: None,
            work_email: None,
            personal_email: None,
            work_phone: None,
            cell_phone: None,
            address: None,
            handle: None,
            external_id: None,
            created_at,
            modified_at,
        }
    }

    pub fn external_contact(&mut self, c: &Contact) -> anyhow::Result<()> {
        let handle = |kind| c.handle.as_ref().and_then(|h| h.column(kind));
        self.batch.row(
            Table::ExternalContacts,
            &[
                c.id.into(),
                c.canonical.into(),
                c.name.as_ref().into(),
                c.title.into(),
                c.work_email.as_ref().into(),
                c.personal_email.as_ref().into(),
                c.work_phone.as_ref().into(),
                c.cell_phone.as_ref().into(),
                c.address.as_ref().into(),
                handle("TWITTER").into(),
                handle("INSTAGRAM").into(),
                handle("FACEBOOK").into(),
                handle("WHATSAPP").into(),
                handle("APPLE_MESSAGES").into(),
                c.external_id.as_ref().into(),
                c.created_at.into(),
                c.modified_at.into(),
            ],
        )?;
        self.index(GdprSubject {
            external_contact_id: Some(c.id.to_string()),
            name: c.name.clone(),
            email_addresses: list([&c.work_email, &c.personal_email]),
            phone_numbers: list([&c.work_phone, &c.cell_phone]),
            addresses: list([&c.address]),
            social_handle: c.handle.as_ref().map(|h| {
                let (kind, value) = h.parts();
                SocialHandle {
                    kind: kind.into(),
                    value: value.into(),
                }
            }),
            external_id: c.external_id.clone(),
            canonical_contact_id: c.canonical.map(|id| id.to_string()),
            ..GdprSubject::default()
        })
    }

    /// A dialer contact in one of the contact lists, with no identifiers yet.
    pub fn dialer_contact(&mut self) -> DialerContact {
        let list = pick(&mut self.rng, &self.plan.lists);
        let callable = self.rng.random_bool(0.9);
        let last_attempt = self.rng.random_bool(0.7).then(|| {
            let at = past(&mut self.rng);
            (at, pick(&mut self.rng, DIAL_RESULTS))
        });
        DialerContact {
            id: self.uuid(),
            list,
            name: None,
            phone: None,
            alt_phone: None,
            email: None,
            address: None,
            callable,
            last_attempt,
        }
    }

    pub fn dialer(&mut self, d: &DialerContact) -> anyhow::Result<()> {
        self.batch.row(
            Table::DialerContacts,
            &[
                d.id.into(),
                d.list.into(),
                d.name.as_ref().into(),
                d.phone.as_ref().into(),
                d.alt_phone.as_ref().into(),
                d.email.as_ref().into(),
                d.address.as_ref().into(),
                d.callable.into(),
                d.last_attempt.map(|(at, _)| at).into(),
                d.last_attempt.map(|(_, result)| result).into(),
            ],
        )?;
        self.index(GdprSubject {
            dialer_contact_id: Some(DialerContactId {
                id: Some(d.id.to_string()),
                contact_list_id: Some(d.list.to_string()),
            }),
            name: d.name.clone(),
            phone_numbers: list([&d.phone, &d.alt_phone]),
            email_addresses: list([&d.email]),
            addresses: list([&d.address]),
            ..GdprSubject::default()
        })
    }

    /// An anonymous visitor with a fresh cookie.
    pub fn visitor(&mut self) -> Visitor {
        const BASE36: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
        let cookie = (0..26)
            .map(|_| BASE36[self.rng.random_range(0..36)] as char)
            .collect();
        let first_seen = past(&mut self.rng);
        let last_seen = first_seen + Duration::seconds(self.rng.random_range(0..YEAR_SECS / 12));
        Visitor {
            cookie,
            name: None,
            email: None,
            phone: None,
            first_seen,
            last_seen,
        }
    }

    /// The visitor, its index record, and 1–3 sessions of 2–6 events each.
    pub fn journey(&mut self, v: &Visitor) -> anyhow::Result<()> {
        self.batch.row(
            Table::JourneyVisitors,
            &[
                (&v.cookie).into(),
                v.name.as_ref().into(),
                v.email.as_ref().into(),
                v.phone.as_ref().into(),
                v.first_seen.into(),
                v.last_seen.into(),
            ],
        )?;
        self.index(GdprSubject {
            journey_customer: Some(JourneyCustomer {
                kind: Some("cookie".into()),
                id: Some(v.cookie.clone()),
            }),
            name: v.name.clone(),
            email_addresses: list([&v.email]),
            phone_numbers: list([&v.phone]),
            ..GdprSubject::default()
        })?;
        let span = (v.last_seen - v.first_seen).num_seconds().max(1);
        let sessions = self.rng.random_range(1..=3);
        for session in 0..sessions {
            let id = self.uuid();
            let started = v.first_seen + Duration::seconds(self.rng.random_range(0..span));
            let ip = format!(
                "{}.{}",
                pick(&mut self.rng, &["192.0.2", "198.51.100", "203.0.113"]),
                self.rng.random_range(1..255)
            );
            let agent = pick(&mut self.rng, USER_AGENTS);
            let referrer = pick(&mut self.rng, REFERRERS);
            self.batch.row(
                Table::JourneySessions,
                &[
                    id.into(),
                    (&v.cookie).into(),
                    started.into(),
                    (&ip).into(),
                    agent.into(),
                    referrer.into(),
                ],
            )?;
            let events = self.rng.random_range(2..=6);
            let mut at = started;
            for event in 0..events {
                at += Duration::seconds(self.rng.random_range(5..300));
                // The visitor identified themselves in a form on their first visit.
                let sign_up = session == 0 && event == events - 1;
                let (kind, input) = match (&v.name, &v.email) {
                    (Some(name), Some(email)) if sign_up => {
                        ("form_submit", Some(format!("{name} <{email}>")))
                    }
                    _ => self.browse(v),
                };
                self.batch.row(
                    Table::JourneyEvents,
                    &[
                        uuid(&mut self.rng).into(),
                        id.into(),
                        (&v.cookie).into(),
                        kind.into(),
                        pick(&mut self.rng, PAGES).into(),
                        input.as_ref().into(),
                        at.into(),
                    ],
                )?;
            }
        }
        Ok(())
    }

    /// A page view, a click or a search; identified visitors sometimes search for themselves.
    fn browse(&mut self, v: &Visitor) -> (&'static str, Option<String>) {
        match self.rng.random_range(0..10) {
            0..6 => ("page_view", None),
            6 => ("click", None),
            _ => {
                let own = [&v.email, &v.name]
                    .into_iter()
                    .flatten()
                    .find(|_| self.rng.random_bool(0.3))
                    .cloned();
                let term = own.unwrap_or_else(|| pick(&mut self.rng, SEARCHES).to_string());
                ("search", Some(term))
            }
        }
    }

    /// A conversation with `agent` on a random channel, 3–6 transcript lines, sometimes an
    /// attachment.
    pub fn conversation_with(&mut self, agent: &Agent) -> Conversation {
        Conversation {
            id: self.uuid(),
            channel: pick(
                &mut self.rng,
                &[
                    Channel::Voice,
                    Channel::Chat,
                    Channel::Email,
                    Channel::Message,
                ],
            ),
            queue: pick(&mut self.rng, QUEUES),
            started_at: past(&mut self.rng),
            minutes: self.rng.random_range(2..40),
            lines: self.rng.random_range(3..=6),
            attachment: self.rng.random_bool(0.3),
            agent: agent.clone(),
        }
    }

    /// The conversation, its two participants, its transcript and its attachment. The customer
    /// is reached on the channel by `m.phone` or `m.email`, and says some of `m` out loud.
    pub fn conversation(&mut self, c: &Conversation, m: &Mention) -> anyhow::Result<()> {
        let id = c.id;
        self.batch.row(
            Table::Conversations,
            &[
                id.into(),
                c.channel.as_str().into(),
                c.queue.into(),
                c.started_at.into(),
                (c.started_at + Duration::minutes(c.minutes)).into(),
            ],
        )?;
        let customer_address = if c.channel.by_phone() {
            m.phone
        } else {
            m.email
        };
        self.batch.row(
            Table::Participants,
            &[
                uuid(&mut self.rng).into(),
                id.into(),
                "customer".into(),
                m.name.into(),
                customer_address.into(),
                Field::Null,
            ],
        )?;
        self.batch.row(
            Table::Participants,
            &[
                uuid(&mut self.rng).into(),
                id.into(),
                "agent".into(),
                (&c.agent.name).into(),
                (&c.agent.email).into(),
                c.agent.user_id.into(),
            ],
        )?;
        for (seq, (speaker, body)) in self.transcript(c, m).into_iter().enumerate() {
            self.batch.row(
                Table::TranscriptLines,
                &[
                    uuid(&mut self.rng).into(),
                    id.into(),
                    i32::try_from(seq + 1)?.into(),
                    speaker.into(),
                    (&body).into(),
                ],
            )?;
        }
        if let (true, Some(email)) = (c.attachment, m.email) {
            self.attachment(c, m, email)?;
        }
        Ok(())
    }

    fn transcript(&mut self, c: &Conversation, m: &Mention) -> Vec<(&'static str, String)> {
        let agent_first = c.agent.name.split(' ').next().unwrap_or("your agent");
        let greeting = if c.channel == Channel::Voice {
            format!("Thank you for calling, this is {agent_first}. How can I help?")
        } else {
            format!("Hello, this is {agent_first} from customer care. How can I help?")
        };
        let reach = if c.channel.by_phone() {
            m.phone.map(|p| format!("my number is {p}"))
        } else {
            m.email.map(|e| format!("I'm writing from {e}"))
        };
        let intro = match (m.name, reach) {
            (Some(name), Some(reach)) => format!("Hi, this is {name}, {reach}."),
            (Some(name), None) => format!("Hi, this is {name}."),
            (None, Some(reach)) => format!("Hi, {reach}."),
            (None, None) => "Hi, I have a question about my account.".to_string(),
        };
        let mut asks = Vec::new();
        if let (true, Some(email)) = (c.channel.by_phone(), m.email) {
            asks.push(format!(
                "I need a copy of my last invoice, please send it to {email}."
            ));
        }
        if let (false, Some(phone)) = (c.channel.by_phone(), m.phone) {
            asks.push(format!("Could someone call me back on {phone}?"));
        }
        if let Some(address) = m.address {
            asks.push(format!("I have moved, my new address is {address}."));
        }
        if asks.is_empty() {
            asks.push("I was charged twice last month.".to_string());
        }
        let ask = asks.swap_remove(self.rng.random_range(0..asks.len()));
        let script = [
            ("agent", greeting),
            ("customer", intro),
            (
                "agent",
                pick(
                    &mut self.rng,
                    &[
                        "Thanks, I have found your account. What can I do for you?",
                        "Thank you. How can I help you today?",
                        "Thanks for confirming. What is it about?",
                    ],
                )
                .to_string(),
            ),
            ("customer", ask),
            (
                "agent",
                pick(
                    &mut self.rng,
                    &[
                        "Done. Is there anything else I can do for you?",
                        "That is sorted now. Anything else?",
                    ],
                )
                .to_string(),
            ),
            (
                "customer",
                pick(
                    &mut self.rng,
                    &[
                        "No, that's all. Thank you!",
                        "That's everything, thanks.",
                        "No, thanks, have a nice day.",
                    ],
                )
                .to_string(),
            ),
        ];
        script.into_iter().take(c.lines).collect()
    }

    fn attachment(&mut self, c: &Conversation, m: &Mention, email: &str) -> sqlx::Result<()> {
        let name = m.name.unwrap_or("the customer");
        let at = c.started_at + Duration::minutes(c.minutes);
        let month = at.format("%Y-%m");
        let (file_name, content_type, content) = match self.rng.random_range(0..3) {
            0 => (
                format!("invoice-{month}.pdf"),
                "application/pdf",
                match m.address {
                    Some(address) => format!(
                        "Invoice for {name}, {address}. Amount due: {}.00 EUR.",
                        self.rng.random_range(10..500)
                    ),
                    None => format!(
                        "Invoice for {name}. Amount due: {}.00 EUR.",
                        self.rng.random_range(10..500)
                    ),
                },
            ),
            1 => (
                format!("proof-of-address-{month}.txt"),
                "text/plain",
                format!(
                    "Proof of address for {name}: {}.",
                    m.address.unwrap_or("address withheld")
                ),
            ),
            _ => (
                format!("screenshot-{month}.png"),
                "image/png",
                format!("Screenshot of the account page of {name} ({email})."),
            ),
        };
        self.batch.row(
            Table::Attachments,
            &[
                uuid(&mut self.rng).into(),
                c.id.into(),
                email.into(),
                (&file_name).into(),
                content_type.into(),
                (&content).into(),
                at.into(),
            ],
        )
    }

    pub fn consent(&mut self, c: &Consent) -> sqlx::Result<()> {
        self.batch.row(
            Table::ConsentRecords,
            &[
                uuid(&mut self.rng).into(),
                c.email.into(),
                c.phone.into(),
                c.cookie.into(),
                c.purpose.into(),
                c.granted.into(),
                c.source.into(),
                c.at.into(),
            ],
        )
    }
}

/// The values that are present, or `None` when none is.
fn list<const N: usize>(values: [&Option<String>; N]) -> Option<Vec<String>> {
    let present: Vec<String> = values.into_iter().flatten().cloned().collect();
    (!present.is_empty()).then_some(present)
}
