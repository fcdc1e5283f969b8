//! A first look at a checkpoint before it goes to the converter, whose environment is
//! PyTorch (gigabytes to download on first use): a file that is no checkpoint at all is
//! refused at once, naming it. It reads what the converter's loaders read first: a
//! `.safetensors` file's 8-byte little-endian header length and JSON header (`safetensors`'
//! `load_file`), any other checkpoint's zip archive with its `data.pkl` or pickle opening
//! (`torch.load`). Whether the tensors make a model is still the converter's to say.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Why a file cannot be a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{}: {reason}", .path.display())]
    Not { path: PathBuf, reason: String },
    #[error("{}: cannot read it: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The largest header `safetensors` itself reads (100 MB).
const MAX_HEADER: u64 = 100_000_000;

/// Refuses `path` unless it opens the way its converter loader expects: safetensors by
/// its header, every other checkpoint as a PyTorch zip holding `data.pkl` or a pickle.
pub fn check_checkpoint(path: &Path) -> Result<(), CheckpointError> {
    let io = |source| CheckpointError::Io { path: path.to_path_buf(), source };
    let mut f = File::open(path).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    let mut head = [0u8; 8];
    let got = read_up_to(&mut f, &mut head).map_err(io)?;
    let head = &head[..got];
    let why = if path.extension().is_some_and(|x| x.eq_ignore_ascii_case("safetensors")) {
        safetensors(&mut f, head, len).map_err(io)?
    } else if head.starts_with(b"PK\x03\x04") {
        f.seek(SeekFrom::Start(0)).map_err(io)?;
        torch_zip(f)
    } else if matches!(head, [0x80, 2..=5, ..]) {
        // A pickle from protocol 2 on opens with PROTO and its number; torch.save's legacy
        // format is one too.
        None
    } else {
        Some(format!(
            "not a readable checkpoint: a PyTorch checkpoint is a zip archive (torch.save) or a pickle, and this \
             file is neither (it opens with {}); a safetensors file is read as one only when its name ends in \
             .safetensors",
            hex(head)
        ))
    };
    why.map_or(Ok(()), |reason| Err(CheckpointError::Not { path: path.to_path_buf(), reason }))
}

/// Why `f` is no safetensors file, if it is not: `N` (u64, little-endian), `N` bytes of
/// JSON naming each tensor's dtype, shape and byte range, then the bytes those ranges cover.
fn safetensors(f: &mut File, head: &[u8], len: u64) -> std::io::Result<Option<String>> {
    let not = |why: String| Ok(Some(format!("not a safetensors file ({why})")));
    let Ok(n) = <[u8; 8]>::try_from(head).map(u64::from_le_bytes) else {
        return not(format!("{len} bytes, too short for the 8-byte length its header starts with"));
    };
    if n > MAX_HEADER || n > len - 8 {
        return not(format!(
            "its first 8 bytes give a header of {n} bytes, and the file holds {} after them: truncated, or another \
             kind of file",
            len - 8
        ));
    }
    let mut text = vec![0u8; n as usize];
    f.read_exact(&mut text)?;
    let header: serde_json::Map<String, serde_json::Value> = match serde_json::from_slice(&text) {
        Ok(h) => h,
        Err(e) => return not(format!("its header is not a JSON object: {e}")),
    };
    let mut end = 0u64;
    for (name, tensor) in header.iter().filter(|(k, _)| *k != "__metadata__") {
        let offsets = tensor.get("data_offsets").and_then(|o| o.as_array()).map(|o| o.iter().map(|v| v.as_u64()));
        let range: Option<Vec<u64>> = offsets.and_then(|o| o.collect());
        match (tensor.get("dtype").and_then(|d| d.as_str()), range.as_deref()) {
            (Some(_), Some(&[from, to])) if from <= to => end = end.max(to),
            _ => return not(format!("header entry {name:?} is no tensor (dtype, shape, data_offsets)")),
        }
    }
    let data = len - 8 - n;
    Ok((end > data).then(|| format!("truncated: its tensors need {end} bytes after the header, the file holds {data}")))
}

/// Why `f` is no zip from `torch.save` (one folder holding `data.pkl`), if it is not; the
/// converter says the same.
fn torch_zip(f: File) -> Option<String> {
    match zip::ZipArchive::new(f) {
        Err(e) => Some(format!("not a readable checkpoint: a broken zip archive ({e})")),
        Ok(zip) if zip.file_names().any(|n| n == "data.pkl" || n.ends_with("/data.pkl")) => None,
        Ok(_) => Some("a zip archive, but not a PyTorch checkpoint (no data.pkl in it)".into()),
    }
}

/// Fills `buf` as far as the file goes; how many bytes that was.
fn read_up_to(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

fn hex(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "nothing: it is empty".into();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).expect("write");
        p
    }

    fn safetensors_bytes(header: &str, data: usize) -> Vec<u8> {
        let mut b = (header.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(header.as_bytes());
        b.extend(std::iter::repeat_n(0u8, data));
        b
    }

    #[test]
    fn safetensors_are_read_by_their_header() {
        let dir = tempfile::tempdir().expect("tempdir");
        let header = r#"{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        let good = write(dir.path(), "good.safetensors", &safetensors_bytes(header, 8));
        assert!(check_checkpoint(&good).is_ok());
        let cut = write(dir.path(), "cut.safetensors", &safetensors_bytes(header, 4));
        let err = check_checkpoint(&cut).expect_err("truncated").to_string();
        assert!(err.contains("cut.safetensors: truncated: its tensors need 8 bytes"), "{err}");
        let mut random = vec![0x37u8; 1000];
        random[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        let noise = write(dir.path(), "x.safetensors", &random);
        let err = check_checkpoint(&noise).expect_err("noise").to_string();
        assert!(err.contains("x.safetensors: not a safetensors file (its first 8 bytes give a header of"), "{err}");
        let text = write(dir.path(), "t.safetensors", &safetensors_bytes("[1, 2]", 0));
        assert!(check_checkpoint(&text).expect_err("json").to_string().contains("not a JSON object"));
        let tiny = write(dir.path(), "tiny.safetensors", b"abc");
        assert!(check_checkpoint(&tiny).expect_err("short").to_string().contains("too short"));
    }

    #[test]
    fn pytorch_checkpoints_are_zips_with_a_pickle_or_pickles() {
        let dir = tempfile::tempdir().expect("tempdir");
        let zip_of = |name: &str, entry: &str| {
            let p = dir.path().join(name);
            let mut z = zip::ZipWriter::new(File::create(&p).expect("create"));
            z.start_file(entry, zip::write::SimpleFileOptions::default()).expect("entry");
            std::io::Write::write_all(&mut z, b"x").expect("write");
            z.finish().expect("finish");
            p
        };
        assert!(check_checkpoint(&zip_of("m.pth", "archive/data.pkl")).is_ok());
        let err = check_checkpoint(&zip_of("notes.ckpt", "notes.txt")).expect_err("zip").to_string();
        assert!(err.contains("notes.ckpt: a zip archive, but not a PyTorch checkpoint"), "{err}");
        assert!(check_checkpoint(&write(dir.path(), "old.pth", b"\x80\x02\x8a\x0al\xfc")).is_ok());
        let err = check_checkpoint(&write(dir.path(), "r.pth", b"hello world")).expect_err("text").to_string();
        assert!(err.contains("r.pth: not a readable checkpoint") && err.contains("68 65 6c 6c"), "{err}");
        let err = check_checkpoint(&write(dir.path(), "e.ckpt", b"")).expect_err("empty").to_string();
        assert!(err.contains("it is empty"), "{err}");
    }
}
