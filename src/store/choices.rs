//! What each owner (a key, a user) chose for themselves where a client API keeps one setting
//! for the whole server: A1111's `sd_model_checkpoint`. A1111 is one person's server, so its
//! clients (SillyTavern, Open WebUI) pick a model by setting it there and then send requests
//! naming none; on a box shared by keys, a client key's pick is its own, kept here across
//! restarts, while an admin's changes the box's default.

use redb::{ReadableDatabase, TableDefinition, TableError};

use super::{Store, StoreError};

/// owner → the diffusion model it picked through A1111's options.
pub(crate) const OWNER_CHECKPOINT: TableDefinition<&str, &str> = TableDefinition::new("owner_checkpoint");

impl Store {
    /// The diffusion model `owner` picked, if any.
    pub fn owner_checkpoint(&self, owner: &str) -> Result<Option<String>, StoreError> {
        let txn = self.db.get()?.begin_read()?;
        let table = match txn.open_table(OWNER_CHECKPOINT) {
            Ok(t) => t,
            // A database from before any owner picked one.
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(table.get(owner)?.map(|g| g.value().to_string()))
    }

    /// Records `model` as `owner`'s pick (`None` forgets it: the box's default again).
    pub async fn set_owner_checkpoint(&self, owner: &str, model: Option<String>) -> Result<(), StoreError> {
        let owner = owner.to_string();
        self.write(true, move |ctx| {
            let mut table = ctx.txn.open_table(OWNER_CHECKPOINT)?;
            match &model {
                Some(m) => table.insert(owner.as_str(), m.as_str())?,
                None => table.remove(owner.as_str())?,
            };
            Ok(())
        })
        .await
    }
}
