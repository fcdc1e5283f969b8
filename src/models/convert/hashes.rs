//! The hashes AUTOMATIC1111 knows a checkpoint and a LoRA file by, worked out from the files an
//! import converts, so the pictures of the model they make name them as A1111 would (its
//! `Model hash` and `Lora hashes`, which Civitai links a posted picture's resources by) and
//! A1111 clients pick the model by them. Read once at import, streamed (a 7 GB checkpoint is
//! never held in memory), beside the converter's own read of the same files.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use sha2::{Digest, Sha256};

use super::fused::{Checkpoint, Checkpoints, FusedLora};
use crate::store::artifacts::sha256_read;

/// Where A1111's old model hash reads: 64 KiB from 1 MiB on (`sd_models.model_hash`).
const OLD_HASH_WINDOW: std::ops::Range<u64> = 0x100000..0x110000;

/// A checkpoint file's hashes as A1111 keeps them.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointHash {
    /// The whole file's sha256 (A1111's `sha256`; its first 10 digits the `shorthash`).
    pub sha256: String,
    /// A1111's old `hash`: the first 8 digits of the sha256 of [`OLD_HASH_WINDOW`], which
    /// pictures made before A1111 hashed whole files name.
    pub model_hash: String,
}

/// The hashes of `path` when it is a file (a folder, diffusers' layout, has none in A1111's
/// sense); `None` when `stop` is set before the end.
pub fn checkpoint(path: &Path, stop: &AtomicBool) -> std::io::Result<Option<CheckpointHash>> {
    if !path.is_file() {
        return Ok(None);
    }
    let mut window = Vec::with_capacity((OLD_HASH_WINDOW.end - OLD_HASH_WINDOW.start) as usize);
    let read = sha256_read(&mut File::open(path)?, |at, chunk| {
        let end = at + chunk.len() as u64;
        let (from, to) = (OLD_HASH_WINDOW.start.max(at), OLD_HASH_WINDOW.end.min(end));
        if from < to {
            window.extend_from_slice(&chunk[(from - at) as usize..(to - at) as usize]);
        }
        !stop.load(Ordering::Relaxed)
    })?;
    Ok(read.map(|(_, sha256)| CheckpointHash {
        sha256,
        // A file shorter than the window hashes what of it there is, as A1111's read does.
        model_hash: hex::encode(Sha256::digest(&window))[..8].to_string(),
    }))
}

/// The most header a LoRA's `.safetensors` file may have for its metadata to be read (the
/// format's own limit), so a damaged length reads no gigabytes.
const MAX_HEADER: u64 = 100 << 20;

/// A LoRA file's hash as A1111 keeps it (`NetworkOnDisk`): for a `.safetensors` file whose
/// metadata holds the trainer's `sshs_model_hash`, that (kohya's sd-scripts write it; A1111
/// takes it before hashing, taken here only when it is 64 hex digits); else kohya's "addnet"
/// hash, the sha256 of what follows its header (so editing its metadata keeps it); any other
/// file's whole sha256. Its first 12 digits are the `Lora hashes` shorthash. `None` when
/// `stop` is set before the end.
pub fn lora(path: &Path, stop: &AtomicBool) -> std::io::Result<Option<String>> {
    let mut file = File::open(path)?;
    let safetensors = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
    if safetensors {
        let mut len = [0u8; 8];
        file.read_exact(&mut len)?;
        let len = u64::from_le_bytes(len);
        if len <= MAX_HEADER {
            let mut header = Vec::new();
            (&mut file).take(len).read_to_end(&mut header)?;
            if let Some(hash) = trainers_hash(&header) {
                return Ok(Some(hash));
            }
        }
        file.seek(SeekFrom::Start(len.saturating_add(8)))?;
    }
    Ok(sha256_read(&mut file, |_, _| !stop.load(Ordering::Relaxed))?.map(|(_, sha256)| sha256))
}

/// The `sshs_model_hash` of a `.safetensors` header's `__metadata__`, in lower case, when it
/// is a sha256 in hex (anything else is not taken for one).
fn trainers_hash(header: &[u8]) -> Option<String> {
    let header: serde_json::Value = serde_json::from_slice(header).ok()?;
    let hash = header.pointer("/__metadata__/sshs_model_hash")?.as_str()?;
    (hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit())).then(|| hash.to_ascii_lowercase())
}

/// The A1111 hashes of what one import converts: its checkpoint's, each LoRA's (in the order
/// given), and what could not be read, said but not failing the import (the model then has
/// no hash, as one imported before reelbox kept them).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceHashes {
    pub checkpoint: Option<CheckpointHash>,
    pub loras: Vec<Option<String>>,
    pub unread: Vec<String>,
}

impl SourceHashes {
    /// Reads `input` and the `loras` files through, until `stop` is set.
    pub fn read(input: &Path, loras: &[std::path::PathBuf], stop: &AtomicBool) -> Self {
        let mut unread = Vec::new();
        let mut note = |path: &Path, e: std::io::Error| {
            unread.push(format!("cannot hash {} for A1111 clients: {e}", path.display()));
        };
        let checkpoint = checkpoint(input, stop).unwrap_or_else(|e| {
            note(input, e);
            None
        });
        let loras = loras
            .iter()
            .map(|file| {
                lora(file, stop).unwrap_or_else(|e| {
                    note(file, e);
                    None
                })
            })
            .collect();
        Self { checkpoint, loras, unread }
    }
}

/// How many digits of a checkpoint's sha256 A1111 titles it with and writes as `Model hash`.
pub const SHORTHASH_DIGITS: usize = 10;
/// How many digits of a LoRA's hash A1111 writes in `Lora hashes`.
pub const LORA_SHORTHASH_DIGITS: usize = 12;

impl Checkpoint {
    /// A1111's shorthash: the first 10 digits of its file's sha256 (`Model hash`).
    pub fn shorthash(&self) -> Option<&str> {
        self.sha256.as_deref().map(|h| &h[..SHORTHASH_DIGITS])
    }

    /// Its A1111 title: `name [shorthash]`, or the name alone where it has no hash, as A1111
    /// titles a checkpoint it has not hashed.
    pub fn title(&self) -> String {
        match self.shorthash() {
            Some(short) => format!("{} [{short}]", self.name),
            None => self.name.clone(),
        }
    }

    /// Whether `asked` is one of its hashes as A1111 picks a checkpoint by them: the sha256,
    /// the shorthash or the old 8-digit hash, in either case.
    pub fn hashed_as(&self, asked: &str) -> bool {
        let asked = asked.trim().to_ascii_lowercase();
        let short = self.shorthash().map(str::to_string);
        !asked.is_empty() && [self.sha256.as_ref(), short.as_ref(), self.model_hash.as_ref()].contains(&Some(&asked))
    }

    /// Each fused LoRA with a hash as A1111's `Lora hashes` names it: `(name, shorthash)`.
    pub fn lora_hashes(&self) -> Vec<(String, String)> {
        self.loras.iter().filter_map(|l| Some((l.a1111_name(), l.shorthash()?.to_string()))).collect()
    }
}

impl FusedLora {
    /// A1111's shorthash of it, the first 12 digits of its hash (`Lora hashes`).
    pub fn shorthash(&self) -> Option<&str> {
        self.hash.as_deref().map(|h| &h[..LORA_SHORTHASH_DIGITS])
    }

    /// The name A1111 gives the LoRA in `Lora hashes`: the one a prompt's `<lora:NAME:w>`
    /// uses, its file's stem, without the `:` and `,` A1111 drops from it there.
    pub fn a1111_name(&self) -> String {
        let file = self.file_name();
        let stem = Path::new(file).file_stem().map_or(file.into(), |s| s.to_string_lossy());
        stem.replace([':', ','], "")
    }
}

impl Checkpoints {
    /// The model `asked` names by hash ([`Checkpoint::hashed_as`]): the one converted from that
    /// file alone before one with LoRAs fused into it, which shares its file's hash (a
    /// picture of the fused one names its LoRAs beside that hash).
    pub fn by_hash(&self, asked: &str) -> Option<&Checkpoint> {
        let mut hashed = self.0.iter().filter(|c| c.hashed_as(asked));
        let first = hashed.next()?;
        if !first.is_fused() {
            return Some(first);
        }
        Some(hashed.find(|c| !c.is_fused()).unwrap_or(first))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_hashes_whole_and_its_old_hash_reads_the_window_at_1_mib() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.safetensors");
        // Chunks of 1 MiB: the window starts on the second one's first byte.
        let bytes: Vec<u8> = (0..0x180000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).expect("write");
        let stop = AtomicBool::new(false);
        let h = checkpoint(&path, &stop).expect("read").expect("hashed");
        assert_eq!(h.sha256, hex::encode(Sha256::digest(&bytes)));
        assert_eq!(h.model_hash, hex::encode(Sha256::digest(&bytes[0x100000..0x110000]))[..8]);
        // Shorter than the window: the sha256 of nothing, as A1111's read of past the end.
        std::fs::write(&path, b"tiny").expect("write");
        let h = checkpoint(&path, &stop).expect("read").expect("hashed");
        assert_eq!(h.model_hash, "e3b0c442");
        assert_eq!(checkpoint(dir.path(), &stop).expect("a folder"), None);
        stop.store(true, Ordering::Relaxed);
        assert_eq!(checkpoint(&path, &stop).expect("read"), None, "stopped");
    }

    #[test]
    fn a_safetensors_loras_hash_skips_its_header() {
        let dir = tempfile::tempdir().expect("tempdir");
        let header = br#"{"__metadata__":{"ss_output_name":"ink"}}"#;
        let body = [7u8; 300];
        let mut file = (header.len() as u64).to_le_bytes().to_vec();
        file.extend_from_slice(header);
        file.extend_from_slice(&body);
        let (st, pt) = (dir.path().join("ink.safetensors"), dir.path().join("ink.pt"));
        std::fs::write(&st, &file).expect("write");
        std::fs::write(&pt, &file).expect("write");
        let stop = AtomicBool::new(false);
        assert_eq!(lora(&st, &stop).expect("read"), Some(hex::encode(Sha256::digest(body))));
        assert_eq!(lora(&pt, &stop).expect("read"), Some(hex::encode(Sha256::digest(&file))), "a whole file's");
    }

    #[test]
    fn a_loras_trainer_hash_in_its_metadata_wins_when_it_is_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let body = [7u8; 300];
        let with = |hash: &str| {
            let header = serde_json::json!({"__metadata__": {"ss_output_name": "ink", "sshs_model_hash": hash}});
            let header = header.to_string().into_bytes();
            let mut file = (header.len() as u64).to_le_bytes().to_vec();
            file.extend_from_slice(&header);
            file.extend_from_slice(&body);
            let path = dir.path().join("ink.safetensors");
            std::fs::write(&path, &file).expect("write");
            lora(&path, &AtomicBool::new(false)).expect("read")
        };
        let sshs = "ABCDEF0123456789".repeat(4);
        assert_eq!(with(&sshs), Some(sshs.to_ascii_lowercase()), "A1111 takes the trainer's hash");
        let addnet = Some(hex::encode(Sha256::digest(body)));
        assert_eq!(with("not a hash"), addnet, "else the addnet hash");
        assert_eq!(with(&"é".repeat(32)), addnet, "64 bytes, not 64 hex digits");
    }

    #[test]
    fn a_checkpoint_is_titled_and_picked_by_its_hashes_a_plain_one_first() {
        let sha = "0123456789abcdef".repeat(4);
        let lora =
            FusedLora { file: "C:\\l\\ink: v2, final.safetensors".into(), scale: 0.5, hash: Some("f".repeat(64)) };
        let plain = Checkpoint {
            name: "sd".into(),
            sha256: Some(sha.clone()),
            model_hash: Some("89abcdef".into()),
            ..Checkpoint::default()
        };
        let fused = Checkpoint { name: "inked".into(), loras: vec![lora], ..plain.clone() };
        assert_eq!((plain.shorthash(), plain.title().as_str()), (Some("0123456789"), "sd [0123456789]"));
        assert_eq!(fused.lora_hashes(), [("ink v2 final".to_string(), "f".repeat(12))]);
        let none = Checkpoint { name: "old".into(), ..Checkpoint::default() };
        assert_eq!((none.shorthash(), none.title().as_str()), (None, "old"));
        let all = Checkpoints(vec![fused, plain, none]);
        for asked in
            [sha.as_str(), "0123456789", "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef", "89abcdef"]
        {
            assert_eq!(all.by_hash(asked).map(|c| c.name.as_str()), Some("sd"), "{asked}");
        }
        assert_eq!(all.by_hash("012345678").map(|c| c.name.as_str()), None, "no other prefix");
        assert_eq!(all.by_hash("").map(|c| c.name.as_str()), None);
        let only_fused = Checkpoints(vec![all.0[0].clone()]);
        assert_eq!(only_fused.by_hash("0123456789").map(|c| c.name.as_str()), Some("inked"));
    }
}
