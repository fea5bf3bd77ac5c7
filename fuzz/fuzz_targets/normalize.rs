//! Identifier normalization over arbitrary text, for every search type: it never panics, a
//! value it accepts is never empty and holds no control character (nothing PostgreSQL or a log
//! line could choke on), and for names, addresses, phone numbers, email addresses and external
//! ids normalizing a normalized value changes nothing.
//!
//! Social handles are left out of that last check: they fold as the catalog's SQL folds them
//! (one run of leading `@` off, then trimmed, so "@ @x" gives "@x" and then "x"), and a WhatsApp
//! value is a phone number when it parses as one, which can depend on the case folding applied
//! before (`61X3A8j(2` is a handle, its folded form a phone number).

#![no_main]

use std::sync::OnceLock;

use gdprd::index::{Normalizer, SearchType};
use libfuzzer_sys::fuzz_target;

fn normalizer() -> &'static Normalizer {
    static NORMALIZER: OnceLock<Normalizer> = OnceLock::new();
    NORMALIZER.get_or_init(|| Normalizer::new("US").expect("US is a region"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    for kind in SearchType::ALL {
        let Ok(value) = normalizer().normalize(kind, raw) else {
            continue;
        };
        let value = value.as_str();
        assert!(!value.is_empty(), "{kind}: empty value");
        assert!(
            !value.chars().any(char::is_control),
            "{kind}: control character in {value:?}"
        );
        if kind.is_social() {
            continue;
        }
        let again = normalizer()
            .normalize(kind, value)
            .unwrap_or_else(|e| panic!("{kind}: {value:?} normalizes but not again: {e}"));
        assert_eq!(again.as_str(), value, "{kind}: not idempotent");
    }
});
