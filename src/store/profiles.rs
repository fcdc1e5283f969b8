//! Profiles: presenter portrait, voice and style, one record each in `PROFILES`.

use redb::{ReadableDatabase, ReadableTable};
use ulid::Ulid;

use super::codec::{decode, encode};
use super::records::Profile;
use super::{PROFILES, Store, StoreError};

impl Store {
    /// Reads a profile.
    pub fn profile(&self, id: Ulid) -> Result<Option<Profile>, StoreError> {
        self.get(PROFILES, id)
    }

    /// Lists profiles (one owner's, or all).
    pub fn profiles(&self, owner: Option<&str>) -> Result<Vec<Profile>, StoreError> {
        let txn = self.db.get()?.begin_read()?;
        let table = txn.open_table(PROFILES)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (_, v) = entry?;
            let p: Profile = decode(v.value())?;
            if owner.is_none_or(|o| o == p.owner) {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// Creates or replaces a profile.
    pub async fn put_profile(&self, profile: Profile) -> Result<Profile, StoreError> {
        self.write(true, move |ctx| {
            ctx.txn.open_table(PROFILES)?.insert(profile.id.0, encode(&profile).as_slice())?;
            Ok(profile)
        })
        .await
    }

    /// Deletes a profile; false if it did not exist.
    pub async fn delete_profile(&self, id: Ulid) -> Result<bool, StoreError> {
        self.write(true, move |ctx| Ok(ctx.txn.open_table(PROFILES)?.remove(id.0)?.is_some())).await
    }
}
