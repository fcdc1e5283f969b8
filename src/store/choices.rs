//! What each owner (a key, a user) chose for themselves where a client API keeps one setting
//! for the whole server: A1111's `sd_model_checkpoint` and `CLIP_stop_at_last_layers`. A1111
//! is one person's server, so its clients (SillyTavern, Open WebUI) pick a model by setting
//! it there and then send requests naming none; on a box shared by keys, a client key's pick
//! is its own, kept here across restarts (an admin's model changes the box's default), and
//! so is anyone's clip skip.

use redb::{ReadableDatabase, TableDefinition, TableError};

use super::{Store, StoreError};

/// owner → the diffusion model it picked through A1111's options.
pub(crate) const OWNER_CHECKPOINT: TableDefinition<&str, &str> = TableDefinition::new("owner_checkpoint");
/// owner → the clip skip it set through A1111's options (past 1; none: 1).
pub(crate) const OWNER_CLIP_SKIP: TableDefinition<&str, &str> = TableDefinition::new("owner_clip_skip");

impl Store {
    /// The diffusion model `owner` picked, if any.
    pub fn owner_checkpoint(&self, owner: &str) -> Result<Option<String>, StoreError> {
        self.choice(OWNER_CHECKPOINT, owner)
    }

    /// Records `model` as `owner`'s pick (`None` forgets it: the box's default again).
    pub async fn set_owner_checkpoint(&self, owner: &str, model: Option<String>) -> Result<(), StoreError> {
        self.set_choice(OWNER_CHECKPOINT, owner, model).await
    }

    /// The clip skip `owner` set, if any.
    pub fn owner_clip_skip(&self, owner: &str) -> Result<Option<u32>, StoreError> {
        Ok(self.choice(OWNER_CLIP_SKIP, owner)?.and_then(|v| v.parse().ok()))
    }

    /// Records `skip` as `owner`'s clip skip (`None` forgets it: the model's own).
    pub async fn set_owner_clip_skip(&self, owner: &str, skip: Option<u32>) -> Result<(), StoreError> {
        self.set_choice(OWNER_CLIP_SKIP, owner, skip.map(|s| s.to_string())).await
    }

    fn choice(&self, table: TableDefinition<'static, &str, &str>, owner: &str) -> Result<Option<String>, StoreError> {
        let txn = self.db.get()?.begin_read()?;
        let table = match txn.open_table(table) {
            Ok(t) => t,
            // A database from before any owner chose one.
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(table.get(owner)?.map(|g| g.value().to_string()))
    }

    async fn set_choice(
        &self,
        table: TableDefinition<'static, &'static str, &'static str>,
        owner: &str,
        value: Option<String>,
    ) -> Result<(), StoreError> {
        let owner = owner.to_string();
        self.write(true, move |ctx| {
            let mut table = ctx.txn.open_table(table)?;
            match &value {
                Some(v) => table.insert(owner.as_str(), v.as_str())?,
                None => table.remove(owner.as_str())?,
            };
            Ok(())
        })
        .await
    }
}
