//! Profiles: presenter portrait, voice and style, one record each in `PROFILES`.

use std::collections::HashSet;
use std::path::Path;

use redb::{Database, DatabaseError, ReadOnlyDatabase, ReadOnlyTable, ReadableDatabase, ReadableTable, TableError};
use ulid::Ulid;

use super::codec::{decode, encode};
use super::records::Profile;
use super::references::References;
use super::retention::{Plan, Removal, execute, snapshot};
use super::{DB_FILE, PROFILES, Store, StoreError};

/// The profiles of `table` (one owner's, or all).
fn listed(table: &ReadOnlyTable<u128, &[u8]>, owner: Option<&str>) -> Result<Vec<Profile>, StoreError> {
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

/// Every profile in data dir `data_dir`'s database, read while no process holds it. A
/// database shut down cleanly is read with redb's read-only open, which keeps no lock past the
/// read, writes no PID, makes no table and changes nothing; one a daemon killed outright
/// (`kill -9`, a power cut) left needs redb's repair, which that open refuses, so it is
/// opened as the daemon opens it at start, repairing it under redb's own exclusive lock (its
/// records stay; the daemon's next start finds it clean), and read. Neither makes a data dir
/// or a table, nor removes a file, as [`Store::open`] (`gc`, `keys create --offline`) does.
/// For `reelbox rm` with no daemon, which names the profiles that name the model it removes.
/// No database reads as no profiles; one a process holds is [`StoreError::InUse`], whichever
/// open finds it held (a daemon starting between the two included: its lock decides, never
/// a guess); one this user cannot read or repair is [`StoreError::Open`].
pub fn profiles_at_rest(data_dir: &Path) -> Result<Vec<Profile>, StoreError> {
    let path = data_dir.join(DB_FILE);
    // Also false when the dir is not this user's to search (the packaged service's).
    if !path.exists() {
        return Ok(Vec::new());
    }
    let refused = |e: DatabaseError| match e {
        DatabaseError::DatabaseAlreadyOpen => {
            StoreError::InUse { dir: data_dir.to_path_buf(), holder: super::lock::holder(data_dir) }
        }
        e => StoreError::Open { path: path.clone(), reason: e.to_string() },
    };
    match ReadOnlyDatabase::open(&path) {
        Ok(db) => every_profile(&db),
        // Not shut down cleanly: `Database::open` repairs (it makes no file where none is).
        Err(DatabaseError::RepairAborted) => every_profile(&Database::open(&path).map_err(refused)?),
        Err(e) => Err(refused(e)),
    }
}

/// Every profile in `db`, none in a database from before profiles.
fn every_profile(db: &impl ReadableDatabase) -> Result<Vec<Profile>, StoreError> {
    let txn = db.begin_read()?;
    match txn.open_table(PROFILES) {
        Ok(table) => listed(&table, None),
        Err(TableError::TableDoesNotExist(_)) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

impl Store {
    /// Reads a profile.
    pub fn profile(&self, id: Ulid) -> Result<Option<Profile>, StoreError> {
        self.get(PROFILES, id)
    }

    /// Lists profiles (one owner's, or all).
    pub fn profiles(&self, owner: Option<&str>) -> Result<Vec<Profile>, StoreError> {
        let txn = self.db.get()?.begin_read()?;
        listed(&txn.open_table(PROFILES)?, owner)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_rest_a_dir_without_a_database_has_no_profiles_and_gets_none_made() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        assert!(profiles_at_rest(&data).expect("no database").is_empty());
        assert!(!data.exists(), "reading makes no data dir");
    }

    #[tokio::test]
    async fn at_rest_a_database_a_process_holds_is_in_use() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), true, 8).expect("open");
        let held = profiles_at_rest(dir.path()).expect_err("held by the store");
        assert!(matches!(held, StoreError::InUse { .. }), "{held}");
        store.close();
    }
}
