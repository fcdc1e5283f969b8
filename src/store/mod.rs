//! The redb store: the only code that touches tables.

pub mod codec;
pub mod records;
