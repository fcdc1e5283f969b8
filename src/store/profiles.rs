//! Profiles: presenter portrait, voice and style, one record each in `PROFILES`.

use std::collections::HashSet;

use redb::{ReadableDatabase, ReadableTable};
use ulid::Ulid;

use super::codec::{decode, encode};
use super::records::Profile;
use super::references::References;
use super::retention::{Plan, Removal, execute, snapshot};
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

    /// Creates or replaces a profile. A new name its owner already uses for another profile
    /// is refused ([`StoreError::ProfileNameTaken`]), checked in the writing transaction so
    /// two creates at once cannot both take it; a profile that keeps its name is stored as
    /// is (a store from before this rule may hold two of one name: each stays editable).
    pub async fn put_profile(&self, profile: Profile) -> Result<Profile, StoreError> {
        self.write(true, move |ctx| {
            let mut table = ctx.txn.open_table(PROFILES)?;
            let stored = table.get(profile.id.0)?.map(|g| decode::<Profile>(g.value())).transpose()?;
            if stored.is_none_or(|old| old.name != profile.name) {
                let mut others = Vec::new();
                for entry in table.iter()? {
                    others.push(decode::<Profile>(entry?.1.value())?);
                }
                name_free(&profile, &others)?;
            }
            table.insert(profile.id.0, encode(&profile).as_slice())?;
            Ok(profile)
        })
        .await
    }

    /// Refuses `profile`'s name when its owner already has another profile of that name
    /// (the same check as [`Store::put_profile`], before a create stores its uploads).
    pub fn check_profile_name(&self, profile: &Profile) -> Result<(), StoreError> {
        name_free(profile, &self.profiles(Some(&profile.owner))?)
    }

    /// Deletes a profile with its portrait and voice sample (records, then files), freeing
    /// their bytes from the owner's storage; one that another profile or any job (queued,
    /// running or finished and kept) names stays, as an upload of its owner, and so does one
    /// the key also sent on its own (its stage is `upload`, see `uploads::refresh`).
    pub async fn delete_profile(&self, id: Ulid) -> Result<Removal, StoreError> {
        let (removal, files) = self
            .write(true, move |ctx| {
                let removed = ctx.txn.open_table(PROFILES)?.remove(id.0)?.map(|g| decode::<Profile>(g.value()));
                let profile =
                    removed.transpose()?.ok_or_else(|| StoreError::NotFound { what: "profile", id: id.to_string() })?;
                let own: HashSet<Ulid> = profile.portrait.into_iter().chain(profile.voice_sample).collect();
                let snap = snapshot(ctx.txn)?;
                let refs = References::of(&snap.jobs, &snap.profiles);
                let plan = Plan {
                    remove: snap
                        .artifacts
                        .into_iter()
                        // A portrait the key also sent on its own is an upload now: it stays.
                        .filter(|a| own.contains(&a.id) && a.stage.as_deref() == Some("profile"))
                        .filter(|a| a.job.is_none() && !refs.needed(a.id, &HashSet::new()))
                        .collect(),
                    ..Plan::default()
                };
                execute(ctx, &plan, false)
            })
            .await?;
        self.remove_files(files).await;
        Ok(removal)
    }
}

/// Ok when no profile in `others` but `profile` itself has its owner and its name; names
/// compare as `profiles show NAME` finds them.
fn name_free(profile: &Profile, others: &[Profile]) -> Result<(), StoreError> {
    match others
        .iter()
        .find(|o| o.id != profile.id && o.owner == profile.owner && crate::text::same(&o.name, &profile.name))
    {
        Some(o) => Err(StoreError::ProfileNameTaken { name: o.name.clone(), id: o.id.to_string() }),
        None => Ok(()),
    }
}
