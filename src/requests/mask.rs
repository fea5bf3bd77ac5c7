//! The masked display form of an erased subject: enough for a person to recognize which request
//! this was, too little to identify anyone.

use crate::wire::{DialerContactId, GdprSubject, JourneyCustomer, SocialHandle};

/// Masks every value of a subject.
pub fn mask_subject(s: &GdprSubject) -> GdprSubject {
    let list = |v: &Option<Vec<String>>, f: fn(&str) -> String| {
        v.as_ref()
            .map(|values| values.iter().map(|x| f(x)).collect())
    };
    GdprSubject {
        name: s.name.as_deref().map(mask_words),
        user_id: s.user_id.as_deref().map(mask_id),
        external_contact_id: s.external_contact_id.as_deref().map(mask_id),
        dialer_contact_id: s.dialer_contact_id.as_ref().map(|d| DialerContactId {
            id: d.id.as_deref().map(mask_id),
            contact_list_id: d.contact_list_id.clone(),
        }),
        journey_customer: s.journey_customer.as_ref().map(|j| JourneyCustomer {
            kind: j.kind.clone(),
            id: j.id.as_deref().map(mask_id),
        }),
        social_handle: s.social_handle.as_ref().map(|h| SocialHandle {
            kind: h.kind.clone(),
            value: mask_id(&h.value),
        }),
        external_id: s.external_id.as_deref().map(mask_id),
        addresses: list(&s.addresses, mask_words),
        phone_numbers: list(&s.phone_numbers, mask_phone),
        email_addresses: list(&s.email_addresses, mask_email),
        canonical_contact_id: s.canonical_contact_id.as_deref().map(mask_id),
    }
}

/// `Ana García` → `A** G*****`.
fn mask_words(s: &str) -> String {
    s.split_whitespace()
        .map(|w| {
            let mut chars = w.chars();
            let first: String = chars.next().into_iter().collect();
            first + &"*".repeat(chars.count())
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `ana.garcia@example.com` → `a*********@example.com`.
fn mask_email(s: &str) -> String {
    match s.rsplit_once('@') {
        Some((local, domain)) => format!("{}@{domain}", mask_words(local)),
        None => mask_words(s),
    }
}

/// Keeps the last two digits: `(555) 010-0001` → `********01`.
fn mask_phone(s: &str) -> String {
    let digits: Vec<char> = s.chars().filter(char::is_ascii_digit).collect();
    let keep = digits.len().saturating_sub(2);
    "*".repeat(keep) + &digits[keep..].iter().collect::<String>()
}

/// Keeps the first three characters of an id.
fn mask_id(s: &str) -> String {
    let shown: String = s.chars().take(3).collect();
    format!("{shown}***")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_leave_no_identifier_readable() {
        let subject = GdprSubject {
            name: Some("Ana García".into()),
            email_addresses: Some(vec!["ana.garcia@example.com".into()]),
            phone_numbers: Some(vec!["(555) 010-0001".into()]),
            external_contact_id: Some("ec-ana-1".into()),
            ..GdprSubject::default()
        };
        let masked = mask_subject(&subject);
        assert_eq!(masked.name.as_deref(), Some("A** G*****"));
        assert_eq!(
            masked.email_addresses,
            Some(vec!["a*********@example.com".into()])
        );
        assert_eq!(masked.phone_numbers, Some(vec!["********01".into()]));
        assert_eq!(masked.external_contact_id.as_deref(), Some("ec-***"));
        let json = serde_json::to_string(&masked).unwrap();
        for secret in ["Ana", "García", "ana.garcia", "0100", "ana-1"] {
            assert!(!json.contains(secret), "{secret} in {json}");
        }
    }
}
