//! A generated person: who they are (name, email addresses, phone numbers, address), and in which
//! services they appear.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::locales::{CORP_DOMAIN, EMAIL_DOMAINS, LOCALES, Locale, us_number};
use super::services::{Channel, Consent, DirectoryUser, Gen, Handle, Known, Mention, past, pick};

pub(super) struct Person {
    number: u64,
    locale: &'static Locale,
    first: &'static str,
    last: &'static str,
    name: String,
    emails: usize,
    email_style: usize,
    first_domain: usize,
    /// Writes the first email address with capitals, as people do.
    capitals: bool,
    phones: u64,
    address: String,
}

#[derive(Clone, Copy)]
enum Spelling {
    /// `(201) 555-0123`: the national format of the default region.
    National,
    /// `201-555-0123`, as dialer lists hold numbers.
    Dashed,
    /// `+1 201 555 0123`.
    International,
}

impl Person {
    /// Draws a person. Email addresses and phone numbers carry the person's number, so that no
    /// two people share one.
    pub fn draw(rng: &mut ChaCha8Rng, number: u64) -> Person {
        let locale = pick_locale(rng);
        let first = pick(rng, locale.first_names);
        let last = pick(rng, locale.last_names);
        let name = if locale.family_name_first {
            format!("{last} {first}")
        } else {
            format!("{first} {last}")
        };
        let emails = pick(rng, &[1, 1, 2, 2, 3]);
        let email_style = rng.random_range(0..4);
        let first_domain = rng.random_range(0..EMAIL_DOMAINS.len());
        let capitals = rng.random_bool(0.1);
        let phones = if rng.random_bool(0.3) { 2 } else { 1 };
        let address = (locale.address)(
            rng.random_range(1..200),
            pick(rng, locale.streets),
            pick(rng, locale.cities),
            rng.random_range(0..100_000),
        );
        Person {
            number,
            locale,
            first,
            last,
            name,
            emails,
            email_style,
            first_domain,
            capitals,
            phones,
            address,
        }
    }

    /// The person's email addresses, at least `at_least` of them.
    fn emails(&self, at_least: usize) -> Vec<String> {
        (0..self.emails.max(at_least))
            .map(|k| self.email(k))
            .collect()
    }

    fn email(&self, k: usize) -> String {
        let (f, l, n) = (ascii(self.first), ascii(self.last), self.number);
        let local = match (self.email_style + k) % 4 {
            0 => format!("{f}.{l}{n}"),
            1 => format!("{}{l}{n}", &f[..1.min(f.len())]),
            2 => format!("{l}.{f}{n}"),
            _ => format!("{f}_{l}.{n}"),
        };
        let domain = EMAIL_DOMAINS[(self.first_domain + k) % EMAIL_DOMAINS.len()];
        if k == 0 && self.capitals {
            format!("{}@{}", capitalize(&local), capitalize(domain))
        } else {
            format!("{local}@{domain}")
        }
    }

    fn phone(&self, k: u64, spelling: Spelling) -> String {
        let slot = self.number * 2 + k;
        match self.locale.phone {
            Some(abroad) => {
                let number = abroad(slot);
                match spelling {
                    Spelling::Dashed => number.replace(' ', ""),
                    Spelling::National | Spelling::International => number,
                }
            }
            None => {
                let (area, line) = us_number(slot);
                match spelling {
                    Spelling::National => format!("({area}) 555-{line:04}"),
                    Spelling::Dashed => format!("{area}-555-{line:04}"),
                    Spelling::International => format!("+1 {area} 555 {line:04}"),
                }
            }
        }
    }

    /// The person as an employee. Staff (the agents of conversations) are always active.
    pub fn employee(&self, rng: &mut ChaCha8Rng, staff: bool) -> DirectoryUser {
        let id = super::services::uuid(rng);
        let (title, department) = if staff {
            ("Support agent", "Customer care")
        } else {
            pick(
                rng,
                &[
                    ("Account manager", "Sales"),
                    ("Sales representative", "Sales"),
                    ("Billing specialist", "Finance"),
                    ("Team lead", "Customer care"),
                    ("Software engineer", "Engineering"),
                    ("Privacy officer", "Legal"),
                ],
            )
        };
        let phone = rng
            .random_bool(0.6)
            .then(|| self.phone(0, Spelling::National));
        let active = staff || rng.random_bool(0.9);
        DirectoryUser {
            id,
            name: self.name.clone(),
            email: format!(
                "{}.{}{}@{CORP_DOMAIN}",
                ascii(self.first),
                ascii(self.last),
                self.number
            ),
            phone,
            title,
            department,
            active,
            created_at: past(rng),
        }
    }

    fn handle(&self, rng: &mut ChaCha8Rng) -> Handle {
        let (f, l, n) = (ascii(self.first), ascii(self.last), self.number);
        let at = if rng.random_bool(0.5) { "@" } else { "" };
        match rng.random_range(0..20) {
            0..7 => Handle::Twitter(if rng.random_bool(0.5) {
                format!("{at}{}{}{n}", capitalize(&f), capitalize(&l))
            } else {
                format!("{at}{f}_{l}{n}")
            }),
            7..13 => Handle::Instagram(format!("{at}{}.{}.{n}", capitalize(&f), l)),
            13..17 => Handle::Facebook(format!("{}.{}.{n}", capitalize(&f), capitalize(&l))),
            17..19 => Handle::Whatsapp(self.phone(0, Spelling::International)),
            _ => Handle::AppleMessages(format!("urn:mbid:AQAA{:032X}", rng.random::<u128>())),
        }
    }
}

/// A customer: external contact (sometimes a merge set of several), dialer contact, web visitor,
/// and what they said and agreed to.
pub(super) fn customer(g: &mut Gen, p: &Person) -> anyhow::Result<()> {
    // Shares of the whole population, employees (5%) included: ~65% external contacts, ~30%
    // dialer contacts, ~35% web visitors; everyone is at least one of them.
    let contact = g.rng.random_bool(0.684);
    let members = match contact && g.rng.random_bool(0.15) {
        true => g.rng.random_range(2..=3),
        false => 1,
    };
    let dialer = g.rng.random_bool(if contact { 0.25 } else { 0.45 });
    let visitor = !(contact || dialer) || g.rng.random_bool(0.25);
    let emails = p.emails(members);

    if contact {
        external_contacts(g, p, &emails, members)?;
    }
    if dialer {
        let mut d = g.dialer_contact();
        d.name = Some(p.name.clone());
        d.phone = Some(p.phone(0, Spelling::Dashed));
        d.alt_phone =
            (p.phones > 1 && g.rng.random_bool(0.6)).then(|| p.phone(1, Spelling::Dashed));
        d.email = g.rng.random_bool(0.5).then(|| emails[0].clone());
        d.address = g.rng.random_bool(0.4).then(|| p.address.clone());
        g.dialer(&d)?;
    }
    let mut cookie = None;
    if visitor {
        let mut v = g.visitor();
        if g.rng.random_bool(0.5) {
            v.name = Some(p.name.clone());
            v.email = emails.last().cloned();
            v.phone = g
                .rng
                .random_bool(0.4)
                .then(|| p.phone(0, Spelling::National));
        }
        g.journey(&v)?;
        cookie = Some(v.cookie);
    }
    let known = g.known();
    conversations(g, &known)?;
    consents(g, &known, cookie.as_deref())
}

fn external_contacts(
    g: &mut Gen,
    p: &Person,
    emails: &[String],
    members: usize,
) -> anyhow::Result<()> {
    let mut main = g.contact();
    let merged = members > 1;
    main.canonical = merged.then_some(main.id);
    main.name = Some(p.name.clone());
    main.personal_email = Some(emails[0].clone());
    main.work_email = emails.get(1).filter(|_| !merged).cloned();
    main.cell_phone = Some(p.phone(
        0,
        if g.rng.random_bool(0.8) {
            Spelling::National
        } else {
            Spelling::Dashed
        },
    ));
    main.work_phone = (p.phones > 1 && !merged).then(|| p.phone(1, Spelling::National));
    main.address = g.rng.random_bool(0.85).then(|| p.address.clone());
    main.handle = g.rng.random_bool(0.55).then(|| p.handle(&mut g.rng));
    main.external_id = g
        .rng
        .random_bool(0.4)
        .then(|| format!("CRM-{:06}", p.number + 1));
    main.title = g.rng.random_bool(0.3).then(|| {
        pick(
            &mut g.rng,
            &[
                "Purchasing manager",
                "Owner",
                "Office manager",
                "Head of IT",
                "Consultant",
            ],
        )
    });
    g.external_contact(&main)?;

    // The other members of a merge set: the same person recorded again with some other
    // identifiers, as happens when a contact is created twice and later merged.
    for (m, email) in emails.iter().enumerate().take(members).skip(1) {
        let mut c = g.contact();
        c.canonical = Some(main.id);
        c.name = Some(p.name.clone());
        if g.rng.random_bool(0.5) {
            c.work_email = Some(email.clone());
        } else {
            c.personal_email = Some(email.clone());
        }
        c.cell_phone = match m {
            1 => Some(p.phone(0, Spelling::International)),
            _ => (p.phones > 1).then(|| p.phone(1, Spelling::National)),
        };
        c.address = (m == 1 && g.rng.random_bool(0.5)).then(|| p.address.clone());
        g.external_contact(&c)?;
    }
    Ok(())
}

/// 1–3 conversations for ~60% of people, on channels where their index records reach them.
fn conversations(g: &mut Gen, known: &Known) -> anyhow::Result<()> {
    if !g.rng.random_bool(0.63) || (known.emails.is_empty() && known.phones.is_empty()) {
        return Ok(());
    }
    let count = g.rng.random_range(1..=3);
    for _ in 0..count {
        let Some(agent) = g.agent() else {
            return Ok(());
        };
        let mut c = g.conversation_with(&agent);
        let reachable = if c.channel.by_phone() {
            !known.phones.is_empty()
        } else {
            !known.emails.is_empty()
        };
        if !reachable {
            c.channel = match c.channel {
                Channel::Voice => Channel::Email,
                Channel::Email => Channel::Voice,
                Channel::Message => Channel::Chat,
                Channel::Chat => Channel::Message,
            };
        }
        let mention = Mention {
            name: known.names.first().map(String::as_str),
            email: pick_some(&mut g.rng, &known.emails),
            phone: pick_some(&mut g.rng, &known.phones),
            address: known.addresses.first().map(String::as_str),
        };
        g.conversation(&c, &mention)?;
    }
    Ok(())
}

/// 1–3 consent records for ~50% of people.
fn consents(g: &mut Gen, known: &Known, cookie: Option<&str>) -> anyhow::Result<()> {
    let email = known.emails.first().map(String::as_str);
    let phone = known.phones.first().map(String::as_str);
    if !g.rng.random_bool(0.53) {
        return Ok(());
    }
    let purposes = ["marketing", "analytics", "support-recording"];
    let count = g.rng.random_range(1..=3);
    let start = g.rng.random_range(0..purposes.len());
    for purpose in purposes.iter().cycle().skip(start).take(count) {
        let granted = g.rng.random_bool(0.75);
        let at = past(&mut g.rng);
        let consent = match *purpose {
            "marketing" => Consent {
                email,
                phone: if email.is_none() { phone } else { None },
                ..Consent::of(
                    purpose,
                    granted,
                    pick(&mut g.rng, &["web-form", "agent"]),
                    at,
                )
            },
            "analytics" => Consent {
                cookie,
                email: if cookie.is_none() { email } else { None },
                ..Consent::of(purpose, granted, "web-form", at)
            },
            _ => Consent {
                phone,
                email: if phone.is_none() { email } else { None },
                ..Consent::of(purpose, granted, pick(&mut g.rng, &["ivr", "agent"]), at)
            },
        };
        if consent.email.is_some() || consent.phone.is_some() || consent.cookie.is_some() {
            g.consent(&consent)?;
        }
    }
    Ok(())
}

fn pick_some<'a>(rng: &mut ChaCha8Rng, items: &'a [String]) -> Option<&'a str> {
    (!items.is_empty()).then(|| items[rng.random_range(0..items.len())].as_str())
}

fn pick_locale(rng: &mut ChaCha8Rng) -> &'static Locale {
    let total: u32 = LOCALES.iter().map(|l| l.weight).sum();
    let mut at = rng.random_range(0..total);
    for locale in LOCALES {
        if at < locale.weight {
            return locale;
        }
        at -= locale.weight;
    }
    &LOCALES[0]
}

/// A name spelled for an email address or a handle: ASCII letters and digits only.
fn ascii(name: &str) -> String {
    deunicode::deunicode(name)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
