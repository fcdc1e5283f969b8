//! Who is calling. Until API keys exist every caller is the local admin; the extractor is
//! the one place that changes when they do.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::{ApiError, AppState};

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Owner name records are filed under.
    pub owner: String,
    /// Admins see every owner's records.
    pub admin: bool,
}

impl Caller {
    /// The owner filter for listings: `None` (everything) for admins.
    pub fn owner_filter(&self) -> Option<String> {
        (!self.admin).then(|| self.owner.clone())
    }

    /// Whether this caller may see a record owned by `owner`.
    pub fn may_see(&self, owner: &str) -> bool {
        self.admin || self.owner == owner
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(_parts: &mut Parts, _state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Caller { owner: "local".into(), admin: true })
    }
}
