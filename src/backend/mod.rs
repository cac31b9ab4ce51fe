//! The seam for shared state: each stateful piece sits behind a small trait with an
//! embedded implementation here; Redis and PostgreSQL implementations slot in later.

pub mod ledger;
pub mod sqlite;
