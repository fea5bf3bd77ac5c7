//! Identifier normalization: the one place that decides when two spellings of an identifier are
//! the same. Values are stored raw for display and normalized for search:
//! phone numbers to E.164 (default region configurable), email addresses trimmed and case-folded,
//! names and addresses Unicode-normalized, case- and accent-folded with white space collapsed,
//! social handles without a leading `@`, case-folded.

use std::fmt;
use std::str::FromStr;

use phonenumber::country;
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;
use utoipa::ToSchema;

/// The longest identifier value accepted, in characters. Real identifiers are far shorter; the
/// bound keeps hostile input from reaching the database.
pub const MAX_VALUE_CHARS: usize = 512;

/// The identifier types of Genesys' `searchType` (and `ReplacementTerm.type`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[schema(
    description = "An identifier type, as Genesys spells it in `searchType` and \
        `ReplacementTerm.type`."
)]
pub enum SearchType {
    Name,
    Address,
    Phone,
    Email,
    Twitter,
    Instagram,
    Facebook,
    AppleMessages,
    Whatsapp,
    ExternalId,
}

impl SearchType {
    pub const ALL: [SearchType; 10] = [
        SearchType::Name,
        SearchType::Address,
        SearchType::Phone,
        SearchType::Email,
        SearchType::Twitter,
        SearchType::Instagram,
        SearchType::Facebook,
        SearchType::AppleMessages,
        SearchType::Whatsapp,
        SearchType::ExternalId,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SearchType::Name => "NAME",
            SearchType::Address => "ADDRESS",
            SearchType::Phone => "PHONE",
            SearchType::Email => "EMAIL",
            SearchType::Twitter => "TWITTER",
            SearchType::Instagram => "INSTAGRAM",
            SearchType::Facebook => "FACEBOOK",
            SearchType::AppleMessages => "APPLE_MESSAGES",
            SearchType::Whatsapp => "WHATSAPP",
            SearchType::ExternalId => "EXTERNAL_ID",
        }
    }

    /// The social handle types (`SocialHandle.type`).
    pub fn is_social(self) -> bool {
        matches!(
            self,
            SearchType::Twitter
                | SearchType::Instagram
                | SearchType::Facebook
                | SearchType::AppleMessages
                | SearchType::Whatsapp
        )
    }

    /// The allowed values, comma-separated, for error messages.
    pub fn allowed() -> String {
        SearchType::ALL.map(SearchType::as_str).join(", ")
    }
}

impl fmt::Display for SearchType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SearchType {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SearchType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or(())
    }
}

/// A normalized identifier value: the search key stored in the index.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Normalized(String);

impl Normalized {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Debug for Normalized {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Normalized(<redacted>)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NormalizeError {
    #[error("the value is empty")]
    Empty,
    #[error("the value is longer than {MAX_VALUE_CHARS} characters")]
    TooLong,
    #[error(
        "the value is not a phone number (write it in E.164, e.g. +15550100001, or in the national format of {0})"
    )]
    NotPhone(String),
    #[error("the value is not an email address (expected local-part@domain)")]
    NotEmail,
    #[error("the value contains control characters")]
    ControlCharacter,
}

/// Normalizes identifiers; holds the default region for phone numbers written without a country
/// code.
#[derive(Clone)]
pub struct Normalizer {
    region: country::Id,
}

impl fmt::Debug for Normalizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Normalizer")
            .field("region", &self.region)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown region {0:?}: use an ISO 3166-1 alpha-2 code such as US, GB, DE or FR")]
pub struct UnknownRegion(String);

impl Normalizer {
    pub fn new(region: &str) -> Result<Normalizer, UnknownRegion> {
        let region = country::Id::from_str(&region.trim().to_ascii_uppercase())
            .map_err(|_| UnknownRegion(region.to_owned()))?;
        Ok(Normalizer { region })
    }

    pub fn region(&self) -> country::Id {
        self.region
    }

    pub fn normalize(&self, kind: SearchType, raw: &str) -> Result<Normalized, NormalizeError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(NormalizeError::Empty);
        }
        if trimmed.chars().count() > MAX_VALUE_CHARS {
            return Err(NormalizeError::TooLong);
        }
        let free_text = matches!(kind, SearchType::Name | SearchType::Address);
        let forbidden = |c: char| c.is_control() && !(free_text && matches!(c, '\t' | '\n' | '\r'));
        if trimmed.chars().any(forbidden) {
            return Err(NormalizeError::ControlCharacter);
        }
        let value = match kind {
            SearchType::Name | SearchType::Address => fold_text(trimmed),
            SearchType::Email => normalize_email(trimmed)?,
            SearchType::Phone => self.normalize_phone(trimmed)?,
            SearchType::Whatsapp => self
                .normalize_phone(trimmed)
                .unwrap_or_else(|_| fold_handle(trimmed)),
            SearchType::Twitter
            | SearchType::Instagram
            | SearchType::Facebook
            | SearchType::AppleMessages => fold_handle(trimmed),
            SearchType::ExternalId => trimmed.nfc().collect(),
        };
        if value.is_empty() {
            return Err(NormalizeError::Empty);
        }
        Ok(Normalized(value))
    }

    /// E.164, e.g. `+15550100001`. Numbers libphonenumber considers unassigned (such as the
    /// fictional 555-01xx range) are still accepted: we index what controllers hold, and the
    /// parse alone decides country code and national number.
    pub fn normalize_phone(&self, raw: &str) -> Result<String, NormalizeError> {
        let not_phone = || NormalizeError::NotPhone(self.region.as_ref().to_owned());
        let digits = raw.chars().filter(char::is_ascii_digit).count();
        if !(3..=17).contains(&digits) || raw.chars().any(|c| c.is_control()) {
            return Err(not_phone());
        }
        let parsed = phonenumber::parse(Some(self.region), raw).map_err(|_| not_phone())?;
        let e164 = parsed.format().mode(phonenumber::Mode::E164).to_string();
        // The shortest numbers in service have seven digits with their country code, and E.164
        // allows fifteen at most (letters, read as on a keypad, can make more). A number whose
        // E.164 form does not parse back to itself (leading zeros dropped into nothing) is no
        // phone number either: normalizing must be idempotent.
        let e164_digits = e164.len() - 1;
        let stable = phonenumber::parse(Some(self.region), &e164)
            .map(|again| again.format().mode(phonenumber::Mode::E164).to_string() == e164)
            .unwrap_or(false);
        if !(7..=15).contains(&e164_digits) || !stable {
            return Err(not_phone());
        }
        Ok(e164)
    }
}

/// Names and addresses: Unicode-normalized, case- and accent-folded, white space collapsed.
/// `García` and `GARCIA` fold alike; so do `Łódź` and `lodz`. Idempotent.
pub fn fold_text(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut pending_space = false;
    for c in raw.to_lowercase().nfkd().filter(|c| !is_combining_mark(*c)) {
        if c.is_whitespace() || c.is_control() {
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        push_folded_char(&mut out, c);
    }
    out
}

/// Latin letters that carry their accent inside the letter (ł, ø, ß, æ, đ, þ, …) are spelled out
/// in ASCII, as PostgreSQL's `unaccent` does; other scripts are kept as they are.
fn push_folded_char(out: &mut String, c: char) {
    let latin_extended = matches!(c, '\u{00C0}'..='\u{024F}' | '\u{1E00}'..='\u{1EFF}');
    if latin_extended {
        let ascii = deunicode::deunicode_char(c).unwrap_or("");
        if !ascii.is_empty() && ascii.chars().all(|a| a.is_ascii_alphanumeric()) {
            out.extend(ascii.chars().map(|a| a.to_ascii_lowercase()));
            return;
        }
    }
    out.extend(c.to_lowercase());
}

fn normalize_email(raw: &str) -> Result<String, NormalizeError> {
    let folded: String = raw.nfc().collect::<String>().to_lowercase();
    let (local, domain) = folded.rsplit_once('@').ok_or(NormalizeError::NotEmail)?;
    let domain_ok = !domain.is_empty()
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..");
    let clean = |s: &str| !s.chars().any(|c| c.is_whitespace() || c.is_control());
    if local.is_empty() || !domain_ok || !clean(local) || !clean(domain) {
        return Err(NormalizeError::NotEmail);
    }
    Ok(folded)
}

/// Social handles: without leading `@`, case-folded.
fn fold_handle(raw: &str) -> String {
    raw.trim()
        .trim_start_matches('@')
        .trim()
        .nfc()
        .collect::<String>()
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn us() -> Normalizer {
        Normalizer::new("US").unwrap()
    }

    #[test]
    fn phone_spellings_of_one_number_normalize_alike() {
        let n = us();
        for raw in [
            "+1 (555) 010-0001",
            "555-010-0001",
            "+15550100001",
            "(555) 010 0001",
        ] {
            assert_eq!(
                n.normalize(SearchType::Phone, raw).unwrap().as_str(),
                "+15550100001",
                "{raw}"
            );
        }
    }

    #[test]
    fn national_numbers_use_the_default_region() {
        let uk = Normalizer::new("gb").unwrap();
        assert_eq!(
            uk.normalize(SearchType::Phone, "020 7946 0018")
                .unwrap()
                .as_str(),
            "+442079460018"
        );
        assert_eq!(
            us().normalize(SearchType::Phone, "+44 20 7946 0018")
                .unwrap()
                .as_str(),
            "+442079460018"
        );
    }

    #[test]
    fn non_phone_values_are_rejected() {
        for raw in ["hello", "12", "ana@example.com", "+"] {
            assert!(
                matches!(
                    us().normalize(SearchType::Phone, raw),
                    Err(NormalizeError::NotPhone(_))
                ),
                "{raw}"
            );
        }
    }

    #[test]
    fn emails_are_trimmed_and_case_folded() {
        assert_eq!(
            us().normalize(SearchType::Email, "ANA.GARCIA@Example.com ")
                .unwrap()
                .as_str(),
            "ana.garcia@example.com"
        );
        for bad in ["ana", "@example.com", "ana@", "ana@exa mple.com", "a@b..c"] {
            assert_eq!(
                us().normalize(SearchType::Email, bad),
                Err(NormalizeError::NotEmail),
                "{bad}"
            );
        }
    }

    #[test]
    fn names_fold_case_accents_and_space() {
        let n = us();
        let folded = |s| n.normalize(SearchType::Name, s).unwrap().into_string();
        assert_eq!(folded("Ana García"), "ana garcia");
        assert_eq!(folded("  ana  \t garcia "), "ana garcia");
        assert_eq!(folded("ANA GARCÍA"), "ana garcia");
        assert_eq!(folded("Łukasz Żółć"), "lukasz zolc");
        assert_eq!(folded("Søren Straße"), "soren strasse");
        assert_eq!(folded("Zoë Ørsted"), "zoe orsted");
        assert_eq!(folded("Иван Петров"), "иван петров");
    }

    #[test]
    fn handles_lose_the_at_sign_and_case() {
        let n = us();
        assert_eq!(
            n.normalize(SearchType::Twitter, "@AnaG").unwrap().as_str(),
            "anag"
        );
        assert_eq!(
            n.normalize(SearchType::Instagram, "  @@Ana.G ")
                .unwrap()
                .as_str(),
            "ana.g"
        );
        assert_eq!(
            n.normalize(SearchType::Whatsapp, "+1 555 010 0001")
                .unwrap()
                .as_str(),
            "+15550100001"
        );
    }

    #[test]
    fn blank_and_oversized_values_are_rejected() {
        let n = us();
        for t in SearchType::ALL {
            assert_eq!(n.normalize(t, "  \t "), Err(NormalizeError::Empty), "{t}");
            let long = "7".repeat(MAX_VALUE_CHARS + 1);
            assert_eq!(n.normalize(t, &long), Err(NormalizeError::TooLong), "{t}");
        }
        assert_eq!(
            n.normalize(SearchType::Twitter, "@"),
            Err(NormalizeError::Empty)
        );
    }

    #[test]
    fn control_characters_are_refused_except_line_breaks_in_free_text() {
        let n = us();
        for t in SearchType::ALL {
            assert_eq!(
                n.normalize(t, "ana\0garcia"),
                Err(NormalizeError::ControlCharacter),
                "{t}"
            );
        }
        assert_eq!(
            n.normalize(SearchType::Address, "1 Main St\nSpringfield")
                .unwrap()
                .as_str(),
            "1 main st springfield"
        );
    }

    #[test]
    fn search_types_round_trip_and_reject_unknown() {
        for t in SearchType::ALL {
            assert_eq!(t.as_str().parse::<SearchType>(), Ok(t));
        }
        assert!("email".parse::<SearchType>().is_err());
        assert!("USER_ID".parse::<SearchType>().is_err());
    }

    #[test]
    fn debug_never_shows_the_value() {
        let v = us()
            .normalize(SearchType::Email, "ana@example.com")
            .unwrap();
        assert!(!format!("{v:?}").contains("ana"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn normalization_is_idempotent_and_never_panics(raw in any::<String>(), i in 0usize..10) {
            let n = us();
            let kind = SearchType::ALL[i];
            if let Ok(once) = n.normalize(kind, &raw) {
                let twice = n.normalize(kind, once.as_str());
                prop_assert_eq!(twice.as_ref(), Ok(&once), "{} not idempotent", kind);
            }
        }

        #[test]
        fn phone_like_input_never_panics_and_is_idempotent(
            raw in "[+]?[0-9 ().-]{0,24}", region in prop::sample::select(vec!["US", "GB", "DE", "FR", "IN", "BR"]),
        ) {
            let n = Normalizer::new(region).unwrap();
            if let Ok(once) = n.normalize(SearchType::Phone, &raw) {
                prop_assert!(once.as_str().starts_with('+'));
                prop_assert_eq!(n.normalize(SearchType::Phone, once.as_str()), Ok(once));
            }
        }

        #[test]
        fn text_folding_is_idempotent_on_latin_names(raw in "[a-zA-ZÀ-ɏḀ-ỿ '\\-\\t]{0,40}") {
            let once = fold_text(&raw);
            prop_assert_eq!(fold_text(&once), once);
        }
    }
}
