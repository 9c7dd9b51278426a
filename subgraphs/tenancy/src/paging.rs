//! Relay pagination by id: `first`/`after` in, a connection out.
//!
//! Record ids are UUIDv7, so "after this id, ordered by id" is creation order
//! and the id itself is the cursor.

use async_graphql::OutputType;
use async_graphql::connection::{Connection, Edge};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::ids::parse_uuid;

/// Page size when the client gives none.
pub const DEFAULT_PAGE: u64 = 20;
/// The largest page a client may ask for.
pub const MAX_PAGE: u64 = 100;

/// A validated page request.
#[derive(Clone, Copy, Debug)]
pub struct PageRequest {
    /// Return records with ids after this one.
    pub after: Option<Uuid>,
    /// At most this many records.
    pub size: u64,
}

impl PageRequest {
    /// Validates `first` (1–100, default 20) and `after` (a cursor from an
    /// earlier page).
    pub fn new(first: Option<i32>, after: Option<&str>) -> Result<Self> {
        let size = match first {
            None => DEFAULT_PAGE,
            Some(n) if n >= 1 && n as u64 <= MAX_PAGE => n as u64,
            Some(n) => {
                return Err(Error::BadUserInput(format!(
                    "first must be between 1 and {MAX_PAGE}, got {n}"
                )));
            }
        };
        let after = after
            .map(|cursor| parse_uuid(cursor, "cursor"))
            .transpose()?;
        Ok(Self { after, size })
    }

    /// How many rows to fetch: one extra tells whether a next page exists.
    pub fn fetch_limit(&self) -> u64 {
        self.size + 1
    }

    /// Builds the connection from up to `fetch_limit()` rows.
    pub fn connection<T: OutputType>(
        &self,
        mut rows: Vec<T>,
        id: impl Fn(&T) -> Uuid,
    ) -> Connection<String, T> {
        let has_next = rows.len() as u64 > self.size;
        rows.truncate(self.size as usize);
        let mut connection = Connection::new(self.after.is_some(), has_next);
        connection.edges.extend(
            rows.into_iter()
                .map(|row| Edge::new(id(&row).to_string(), row)),
        );
        connection
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes_outside_the_bounds_are_bad_input() {
        assert_eq!(
            PageRequest::new(Some(0), None).unwrap_err().code(),
            "BAD_USER_INPUT"
        );
        assert_eq!(
            PageRequest::new(Some(101), None).unwrap_err().code(),
            "BAD_USER_INPUT"
        );
        assert_eq!(PageRequest::new(None, None).unwrap().size, DEFAULT_PAGE);
        assert_eq!(
            PageRequest::new(None, Some("nope")).unwrap_err().code(),
            "BAD_USER_INPUT"
        );
    }

    #[test]
    fn one_extra_row_means_a_next_page() {
        let page = PageRequest::new(Some(2), None).unwrap();
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let connection = page.connection(ids.clone(), |id| *id);
        assert!(connection.has_next_page);
        assert_eq!(connection.edges.len(), 2);
        assert_eq!(connection.edges[1].cursor, ids[1].to_string());
    }
}
