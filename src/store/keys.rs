//! API keys: records in `API_KEYS`, looked up through a hash → id index. The key itself
//! is shown once at creation and never stored; a 256-bit random key needs no slow KDF,
//! so a plain SHA-256 is the stored form.

use rand::TryRngCore;
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use ulid::Ulid;

use super::codec::{decode, encode};
use super::records::{ApiKey, Scope, now_ms};
use super::{API_KEYS, Store, StoreError};

/// sha256 hex of a key → key id; only keys that are not revoked are indexed.
pub(crate) const KEY_HASHES: TableDefinition<&str, u128> = TableDefinition::new("api_key_hashes");

/// Prefix of every reelbox key, so secret scanners and people recognise one.
pub const KEY_PREFIX: &str = "rb_";

/// A new key: `rb_` and 32 bytes from the operating system's CSPRNG, hex.
pub fn new_secret() -> Result<String, StoreError> {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| StoreError::Db(format!("the OS random source failed: {e}")))?;
    Ok(format!("{KEY_PREFIX}{}", hex::encode(bytes)))
}

/// The stored form of a key (sha256, hex).
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Constant-time equality of two hashes, so response timing says nothing about how much
/// of a guessed hash matched.
pub fn hashes_match(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Refuses work for `owner` when it is a revoked key: checked in the transaction that
/// would queue the work, so a request whose key passed the check just before a revoke
/// cannot queue a job after the revoke has canceled the key's jobs. Owners that are no
/// key (the box's local admin) pass.
pub(crate) fn refuse_revoked_owner(ctx: &super::writer::WriteCtx, owner: &str) -> Result<(), StoreError> {
    let Ok(id) = Ulid::from_string(owner) else { return Ok(()) };
    let table = ctx.txn.open_table(API_KEYS)?;
    let Some(raw) = table.get(id.0)? else { return Ok(()) };
    let key: ApiKey = decode(raw.value())?;
    match key.revoked_at {
        Some(_) => Err(StoreError::KeyRevoked(Box::new(key))),
        None => Ok(()),
    }
}

impl Store {
    /// Stores a new key. With `only_if_none`, refuses (conflict) when an active key
    /// exists — checked in the same transaction, so two racing bootstraps cannot both win.
    pub async fn create_key(&self, key: ApiKey, only_if_none: bool) -> Result<ApiKey, StoreError> {
        self.write(true, move |ctx| {
            let mut hashes = ctx.txn.open_table(KEY_HASHES)?;
            if only_if_none && hashes.len()? > 0 {
                return Err(StoreError::Conflict("a key already exists; creating another needs an admin key".into()));
            }
            if hashes.get(key.hash.as_str())?.is_some() {
                return Err(StoreError::Conflict("a key with this hash already exists".into()));
            }
            hashes.insert(key.hash.as_str(), key.id.0)?;
            ctx.txn.open_table(API_KEYS)?.insert(key.id.0, encode(&key).as_slice())?;
            Ok(key)
        })
        .await
    }

    /// The active key whose hash is `hash`, if any.
    pub fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError> {
        let txn = self.db.get()?.begin_read()?;
        let Some(id) = txn.open_table(KEY_HASHES)?.get(hash)?.map(|g| g.value()) else { return Ok(None) };
        let Some(key) = txn.open_table(API_KEYS)?.get(id)?.map(|g| decode::<ApiKey>(g.value())).transpose()? else {
            return Ok(None);
        };
        Ok((key.revoked_at.is_none() && hashes_match(&key.hash, hash)).then_some(key))
    }

    /// The revoked key whose hash is `hash`, if any: read only for a refused key, to tell
    /// its holder why (a scan: few keys, and only on a failure).
    pub fn revoked_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError> {
        Ok(self.keys()?.into_iter().find(|k| k.revoked_at.is_some() && hashes_match(&k.hash, hash)))
    }

    /// One key record by id (revoked ones included).
    pub fn key(&self, id: Ulid) -> Result<Option<ApiKey>, StoreError> {
        self.get(API_KEYS, id)
    }

    /// Every key record, oldest first (revoked ones included).
    pub fn keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        let txn = self.db.get()?.begin_read()?;
        let table = txn.open_table(API_KEYS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            out.push(decode(entry?.1.value())?);
        }
        Ok(out)
    }

    /// How many keys are active (not revoked).
    pub fn active_key_count(&self) -> Result<u64, StoreError> {
        let txn = self.db.get()?.begin_read()?;
        Ok(txn.open_table(KEY_HASHES)?.len()?)
    }

    /// Revokes a key: it stops working at once; the record stays for the audit trail.
    /// The last active admin key is refused (conflict): without one nobody could manage
    /// keys, pause the queue or pull models until the daemon was stopped for `--offline`.
    /// A key revoked before keeps its `revoked_at` and `revoked_by`, and the answer says it
    /// was. `by` says who revokes it, as people read it (`key "mum"`).
    pub async fn revoke_key(&self, id: Ulid, by: String) -> Result<Revocation, StoreError> {
        self.write(true, move |ctx| {
            let mut keys = ctx.txn.open_table(API_KEYS)?;
            let mut key: ApiKey = match keys.get(id.0)? {
                Some(g) => decode(g.value())?,
                None => return Err(StoreError::NotFound { what: "key", id: id.to_string() }),
            };
            let already = key.revoked_at.is_some();
            if !already {
                // Checked in the same transaction, so two admins revoking each other at
                // once cannot both succeed.
                if key.scope == Scope::Admin && other_active_admins(&ctx.txn.open_table(KEY_HASHES)?, &keys, id)? == 0 {
                    return Err(StoreError::Conflict(format!(
                        "key {:?} ({id}) is the last admin key; create another first \
                         (`reelbox keys create --name NAME --scope admin`), then revoke this one",
                        key.name
                    )));
                }
                key.revoked_at = Some(now_ms());
                key.revoked_by = Some(by);
                ctx.txn.open_table(KEY_HASHES)?.remove(key.hash.as_str())?;
                keys.insert(key.id.0, encode(&key).as_slice())?;
            }
            Ok(Revocation { key, already })
        })
        .await
    }
}

/// A revoked key, and whether it was revoked before this revoke (decided in the revoking
/// transaction, so of two revokes at once exactly one is the first).
#[derive(Debug, Clone)]
pub struct Revocation {
    /// The key's record, `revoked_at` set.
    pub key: ApiKey,
    /// True when it was revoked already; its `revoked_at` is that earlier time.
    pub already: bool,
}

/// How many active admin keys other than `id` there are.
fn other_active_admins(
    hashes: &impl ReadableTable<&'static str, u128>,
    keys: &impl ReadableTable<u128, &'static [u8]>,
    id: Ulid,
) -> Result<usize, StoreError> {
    let mut n = 0;
    for entry in hashes.iter()? {
        let other = entry?.1.value();
        if other == id.0 {
            continue;
        }
        if let Some(g) = keys.get(other)?
            && decode::<ApiKey>(g.value())?.scope == Scope::Admin
        {
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(secret: &str) -> ApiKey {
        ApiKey {
            id: Ulid::new(),
            name: "laptop".into(),
            hash: hash_secret(secret),
            scope: Scope::Client,
            max_queued: None,
            gpu_seconds_per_day: None,
            max_storage_bytes: None,
            created_at: 1,
            revoked_at: None,
            revoked_by: None,
        }
    }

    #[test]
    fn secrets_are_prefixed_256_bit_hex_and_differ() {
        let a = new_secret().expect("random");
        let b = new_secret().expect("random");
        assert!(a.starts_with("rb_") && a.len() == 3 + 64, "{a}");
        assert_ne!(a, b);
        assert_eq!(hash_secret("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert!(hashes_match(&hash_secret("x"), &hash_secret("x")));
        assert!(!hashes_match(&hash_secret("x"), &hash_secret("y")));
        assert!(!hashes_match("ab", "abc"));
    }

    #[tokio::test]
    async fn a_revoked_key_stops_resolving_and_bootstrap_happens_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), true, 8).expect("open");
        let first = store.create_key(key("one"), true).await.expect("first key");
        assert!(store.create_key(key("two"), true).await.is_err(), "second bootstrap refused");
        store.create_key(key("two"), false).await.expect("admin-made key");
        assert_eq!(store.active_key_count().expect("count"), 2);
        assert_eq!(store.key_by_hash(&hash_secret("one")).expect("read").map(|k| k.id), Some(first.id));
        let revoked = store.revoke_key(first.id, "key \"admin\"".into()).await.expect("revoke");
        assert!(!revoked.already);
        assert!(store.key_by_hash(&hash_secret("one")).expect("read").is_none());
        assert_eq!(store.active_key_count().expect("count"), 1);
        let kept = store.key(first.id).expect("read").expect("kept");
        assert!(kept.revoked_at.is_some());
        assert_eq!(kept.revoked_by.as_deref(), Some("key \"admin\""));
        let again = store.revoke_key(first.id, "key \"other\"".into()).await.expect("revoke again");
        assert!(again.already, "a second revoke says the key was revoked before");
        assert_eq!(again.key.revoked_at, revoked.key.revoked_at, "and keeps the first time");
        assert_eq!(again.key.revoked_by.as_deref(), Some("key \"admin\""), "and who first revoked it");
        store.close();
    }

    #[tokio::test]
    async fn the_last_admin_key_cannot_be_revoked_but_one_of_two_can() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), true, 8).expect("open");
        let admin = |secret: &str| ApiKey { scope: Scope::Admin, ..key(secret) };
        let first = store.create_key(admin("a1"), true).await.expect("first admin");
        store.create_key(key("client"), false).await.expect("client");
        assert!(
            matches!(store.revoke_key(first.id, "key \"admin\"".into()).await, Err(StoreError::Conflict(_))),
            "last admin revoked"
        );
        let second = store.create_key(admin("a2"), false).await.expect("second admin");
        store.revoke_key(first.id, "key \"admin\"".into()).await.expect("one of two admins");
        let err = store.revoke_key(second.id, "key \"admin\"".into()).await.expect_err("the remaining admin");
        assert!(err.to_string().contains("--scope admin"), "{err}");
        store.close();
    }

    #[tokio::test]
    async fn a_revoked_key_queues_nothing_even_past_the_request_check() {
        // A request whose key passed the check before the revoke reaches the store after it.
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), true, 8).expect("open");
        let admin = store.create_key(ApiKey { scope: Scope::Admin, ..key("a") }, true).await.expect("admin");
        let kid = store.create_key(key("kid"), false).await.expect("kid");
        let job = crate::store::quota::tests::job;
        store.submit(job(&store, &kid.id.to_string()), 100).await.expect("before the revoke");
        store.revoke_key(kid.id, "key \"admin\"".into()).await.expect("revoke");
        let refused = store.submit(job(&store, &kid.id.to_string()), 100).await;
        assert!(matches!(refused, Err(StoreError::KeyRevoked(ref k)) if k.id == kid.id), "{refused:?}");
        store.submit(job(&store, &admin.id.to_string()), 100).await.expect("another key's");
        store.submit(job(&store, "local"), 100).await.expect("the box's local admin");
        store.close();
    }
}
