//! The subject index: every known person-record and its identifiers, normalized for search.

pub mod import;
pub mod normalize;
pub mod record;
pub mod store;

pub use normalize::{NormalizeError, Normalized, Normalizer, SearchType};
pub use record::{FieldError, IndexRecord, RecordKey, SubjectKind};
