//! A job named on the command line by its whole id or by the end of it: `reelbox top` shows
//! ids' last 8 characters (their first ones are a timestamp, alike for jobs sent together),
//! so the commands that take an id take that too, as git takes a short hash.

use anyhow::bail;
use reelbox::api::jobs::JobPage;

use super::client::Client;

/// Fewest characters taken as the end of an id (fewer match too many jobs to be meant).
const MIN_SUFFIX: usize = 4;
/// Jobs asked for per page while looking (the API's largest page).
const PAGE: usize = 500;

/// The whole id of the job `given` names: itself when it is a whole id (the daemon judges
/// it), else the one job of the caller's whose id ends with it (case does not matter, as in
/// ids everywhere).
pub async fn resolve(c: &Client, given: &str) -> anyhow::Result<String> {
    let end = given.trim().to_ascii_uppercase();
    let whole = end.len() == ulid::ULID_LEN;
    let crockford = end.chars().all(|ch| ch.is_ascii_digit() || (ch.is_ascii_uppercase() && !"ILOU".contains(ch)));
    if whole || end.len() < MIN_SUFFIX || !crockford {
        return Ok(given.to_string());
    }
    let mut found = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/jobs?limit={PAGE}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page: JobPage = c.get(&path).await?;
        found.extend(page.jobs.into_iter().map(|j| j.id).filter(|id| id.ends_with(&end)));
        match page.next_cursor {
            Some(next) if found.len() < 2 => cursor = Some(next),
            _ => break,
        }
    }
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("no job's id ends with {end}; `{}` shows the jobs and their ids", c.command("jobs list")),
        [a, b, ..] => bail!("{end} is the end of more than one job's id ({a}, {b}); give more of it"),
    }
}
