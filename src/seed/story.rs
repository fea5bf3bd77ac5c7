//! The people the walkthrough and the tests rely on: always the first three of a seeded
//! organization (when at least three people are seeded into an empty one), with exactly these
//! values.
//!
//! - Ana García: an external contact in a merge set of two records, also a dialer contact, a web
//!   visitor who identified herself, two conversations (one with an attachment) and consent
//!   records.
//! - Ana Garcia: a different person with the same name up to the accent, which is what the
//!   ambiguity guard is for.
//! - Jonas Müller: an active employee, who answers conversations as an agent.

use anyhow::Context;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::services::{
    Agent, Channel, Consent, Contact, Conversation, DialerContact, DirectoryUser, Gen, Handle,
    Mention, Visitor,
};

/// How many story people there are; the generated people are numbered after them.
pub const PEOPLE: u64 = 3;

pub const ANA_NAME: &str = "Ana García";
/// Ana's main email address: on her first external contact, her dialer contact and her web visits.
pub const ANA_EMAIL: &str = "ana.garcia@example.com";
pub const ANA_PHONE: &str = "(555) 010-0001";
/// Every spelling of Ana's phone number normalizes to this.
pub const ANA_PHONE_E164: &str = "+15550100001";
pub const ANA_ADDRESS: &str = "12 Calle Mayor, Madrid";
pub const ANA_TWITTER: &str = "@AnaG";
pub const ANA_EXTERNAL_ID: &str = "CRM-000001";
/// The second record of Ana's merge set holds only these (and her name).
pub const ANA_ALT_EMAIL: &str = "ana.g@mail.example";
pub const ANA_ALT_PHONE: &str = "+1 555 010 0001";
/// Ana's phone number as the outbound dialer list spells it.
pub const ANA_DIALER_PHONE: &str = "555-010-0001";
/// The tracking cookie of Ana's web visits.
pub const ANA_COOKIE: &str = "anagarciacookie0000000000a";

pub const OTHER_ANA_NAME: &str = "Ana Garcia";
pub const OTHER_ANA_EMAIL: &str = "ana.garcia@example.org";
pub const OTHER_ANA_PHONE: &str = "(555) 010-0002";

pub const JONAS_NAME: &str = "Jonas Müller";
pub const JONAS_EMAIL: &str = "jonas.mueller@corp.example";
pub const JONAS_PHONE: &str = "(555) 010-0003";

/// Writes story person `index` (0, 1 or 2).
pub(super) fn emit(g: &mut Gen, index: u64) -> anyhow::Result<()> {
    match index {
        0 => ana(g),
        1 => other_ana(g),
        _ => {
            let jonas = jonas(&mut g.rng);
            g.directory_user(&jonas)
        }
    }
}

/// Jonas' directory record. Drawn first from his generator, so that the agent list built before
/// generation and his own directory row agree.
pub(super) fn jonas(rng: &mut ChaCha8Rng) -> DirectoryUser {
    DirectoryUser {
        id: super::services::uuid(rng),
        name: JONAS_NAME.into(),
        email: JONAS_EMAIL.into(),
        phone: Some(JONAS_PHONE.into()),
        title: "Support agent",
        department: "Customer care",
        active: true,
        created_at: super::services::past(rng),
    }
}

fn ana(g: &mut Gen) -> anyhow::Result<()> {
    let first = g.uuid();
    let main = Contact {
        id: first,
        canonical: Some(first),
        name: Some(ANA_NAME.into()),
        work_email: Some(ANA_EMAIL.into()),
        cell_phone: Some(ANA_PHONE.into()),
        address: Some(ANA_ADDRESS.into()),
        handle: Some(Handle::Twitter(ANA_TWITTER.into())),
        external_id: Some(ANA_EXTERNAL_ID.into()),
        ..g.contact()
    };
    g.external_contact(&main)?;
    let second = Contact {
        canonical: Some(first),
        name: Some(ANA_NAME.into()),
        personal_email: Some(ANA_ALT_EMAIL.into()),
        cell_phone: Some(ANA_ALT_PHONE.into()),
        ..g.contact()
    };
    g.external_contact(&second)?;
    let dialer = DialerContact {
        name: Some(ANA_NAME.into()),
        phone: Some(ANA_DIALER_PHONE.into()),
        email: Some(ANA_EMAIL.into()),
        ..g.dialer_contact()
    };
    g.dialer(&dialer)?;
    let visitor = Visitor {
        cookie: ANA_COOKIE.into(),
        name: Some(ANA_NAME.into()),
        email: Some(ANA_EMAIL.into()),
        phone: None,
        ..g.visitor()
    };
    g.journey(&visitor)?;

    let agent = g.plan.agents.first().cloned().context("no agent")?;
    // She calls from her phone and asks for her invoice by email, then writes from that email
    // address with her new postal address, attaching a document that names it.
    let said = Mention {
        name: Some(ANA_NAME),
        email: Some(ANA_EMAIL),
        phone: Some(ANA_PHONE),
        address: None,
    };
    let call = Conversation {
        channel: Channel::Voice,
        lines: 6,
        attachment: false,
        ..g.conversation_with(&agent)
    };
    g.conversation(&call, &said)?;
    let written = Conversation {
        channel: Channel::Email,
        lines: 5,
        attachment: true,
        ..g.conversation_with(&agent)
    };
    let said = Mention {
        address: Some(ANA_ADDRESS),
        ..said
    };
    g.conversation(&written, &said)?;

    let at = super::services::past(&mut g.rng);
    g.consent(&Consent {
        email: Some(ANA_EMAIL),
        ..Consent::of("marketing", true, "web-form", at)
    })?;
    g.consent(&Consent {
        phone: Some(ANA_PHONE),
        ..Consent::of("support-recording", true, "ivr", at)
    })?;
    g.consent(&Consent {
        cookie: Some(ANA_COOKIE),
        ..Consent::of("analytics", false, "web-form", at)
    })?;
    Ok(())
}

fn other_ana(g: &mut Gen) -> anyhow::Result<()> {
    let contact = Contact {
        name: Some(OTHER_ANA_NAME.into()),
        personal_email: Some(OTHER_ANA_EMAIL.into()),
        cell_phone: Some(OTHER_ANA_PHONE.into()),
        ..g.contact()
    };
    g.external_contact(&contact)?;
    let agent: Agent = g.agent().context("no agent")?;
    let chat = Conversation {
        channel: if g.rng.random_bool(0.5) {
            Channel::Chat
        } else {
            Channel::Email
        },
        lines: 4,
        attachment: false,
        ..g.conversation_with(&agent)
    };
    let mention = Mention {
        name: Some(OTHER_ANA_NAME),
        email: Some(OTHER_ANA_EMAIL),
        phone: Some(OTHER_ANA_PHONE),
        address: None,
    };
    g.conversation(&chat, &mention)
}
