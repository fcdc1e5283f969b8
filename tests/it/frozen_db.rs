//! Backward compatibility: databases written by older schemas must keep opening. The files
//! under `tests/fixtures/db/` are frozen, one per schema, never overwritten: before a record
//! version is bumped, `cargo test --test it frozen_db -- --ignored write_frozen` freezes the
//! schema it replaces as [`NEXT_FROZEN`].

use crate::common;

use std::time::Duration;

use common::daemon::{DaemonProc, get_json, is_final, wait_job};
use common::fixture;
use common::tools::{reelbox_cli, run_ok};
use reelbox::store::records::*;
use reelbox::store::{JobFilter, Store};
use serde_json::json;
use ulid::Ulid;

/// The frozen schema-version-1 database, under `tests/fixtures/`.
const V1: &str = "db/v1.redb";
/// Schema 2: key and profile records version 2, job records version 1 (a canceled job did
/// not keep why).
const V2: &str = "db/v2.redb";
/// Schema 3: job records version 3 (an idempotency key keeps a digest of its request; no
/// `first_started_at`), frozen from the code of 2026-12-06 before version 4.
const V3: &str = "db/v3.redb";
/// Schema 4: job records version 4 (a job keeps its first start; no stopped stages),
/// frozen before version 5.
const V4: &str = "db/v4.redb";
/// Schema 5: job records version 5, profile records version 2 (a profile names its picture
/// model, [`PICTURE_MODEL`], but no lip-sync or upscale model), frozen before profile records v3.
const V5: &str = "db/v5.redb";
/// Where [`write_frozen`] writes the current schema (job records version 5, profile records
/// version 3).
const NEXT_FROZEN: &str = "db/v6.redb";
/// The picture model of the frozen profile (v5 and later).
const PICTURE_MODEL: &str = "tiny-sd";
/// The frozen profile (`presenter`).
const PROFILE: &str = "01JQ00000000000000000000P1";

const QUEUED: &str = "01JQ0000000000000000000001";
const DONE: &str = "01JQ0000000000000000000002";
const FAILED: &str = "01JQ0000000000000000000003";
/// Canceled before it ran (only in v2 and later).
const CANCELED: &str = "01JQ0000000000000000000004";
/// Running when the daemon stopped (only in v3 and later), second attempt.
const RUNNING: &str = "01JQ0000000000000000000005";
/// The Idempotency-Key the queued job was sent with (v3 and later keep its request's digest).
const KEY: &str = "frozen-key";

/// A daemon on a copy of the frozen database `name`, with its home (kept alive with it).
fn daemon_on(name: &str) -> (tempfile::TempDir, DaemonProc) {
    let home = tempfile::tempdir().expect("tempdir");
    let data = home.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    std::fs::copy(fixture(name), data.join("reelbox.redb")).expect("copy fixture");
    let d = DaemonProc::start(&data, &[]);
    (home, d)
}

#[test]
fn frozen_v1_database_opens_and_its_jobs_list() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(fixture(V1), dir.path().join("reelbox.redb")).expect("copy fixture");
    let store = Store::open(dir.path(), true, 8).expect("a v1 database opens");
    let jobs = store.list_jobs(&JobFilter::default(), None, 100).expect("list");
    let ids: Vec<String> = jobs.iter().map(|j| j.id.to_string()).collect();
    assert_eq!(ids, vec![FAILED, DONE, QUEUED], "newest first");
    let done = store.job(Ulid::from_string(DONE).expect("ulid")).expect("read").expect("exists");
    assert!(matches!(done.state, JobState::Succeeded { .. }));
    assert_eq!(done.stages[0].artifacts.len(), 1);
    let art = store.artifact(done.stages[0].artifacts[0]).expect("read").expect("artifact record");
    assert_eq!(art.media_type, "image/png");
    let profiles = store.profiles(None).expect("profiles");
    assert_eq!(profiles.len(), 1);
    assert_eq!(profiles[0].style.image_model, None, "a v1 profile loads with no picture model");
    let events = store.events_after(None, 0, 100).expect("events");
    assert!(events.len() >= 3);
    let failed = store.job(Ulid::from_string(FAILED).expect("ulid")).expect("read").expect("exists");
    assert!(matches!(failed.state, JobState::Failed { ref error, .. } if error.contains("bad model")));
    store.close();
}

/// A job canceled before reelbox kept why is shown canceled, without a reason, by the
/// daemon and `reelbox jobs show`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_canceled_before_reasons_were_kept_shows_canceled_without_one() {
    let (home, d) = daemon_on(V2);
    let job = get_json(&reqwest::Client::new(), &d, &format!("/api/v1/jobs/{CANCELED}")).await;
    assert_eq!((job["state"].as_str(), &job["error"]), (Some("canceled"), &serde_json::Value::Null), "{job}");
    assert_eq!(job["finished_at"], "2023-11-14T22:13:21.000Z", "{job}");
    let out =
        run_ok(reelbox_cli(home.path(), &home.path().join("models")).args(["jobs", "show", CANCELED, "--url", &d.url]));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("state    canceled") && !shown.contains("reason"), "{shown}");
}

/// A box upgraded from job records version 3: the job it was running resumes and ends, and
/// an Idempotency-Key it kept still answers its own request with its job and refuses another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v3_database_resumes_its_running_job_and_keeps_its_idempotency_keys() {
    let (_home, d) = daemon_on(V3);
    let http = reqwest::Client::new();
    let resumed = wait_job(&http, &d, RUNNING, Duration::from_secs(60), is_final).await;
    assert_eq!(resumed["state"], "succeeded", "{resumed}");
    let keyed = |steps: u32| {
        let body = json!({"kind": "testcard", "params": {"steps": steps, "step_ms": 0, "width": 64, "height": 36}});
        http.post(d.at("/api/v1/jobs")).header("Idempotency-Key", KEY).json(&body).send()
    };
    let same = keyed(1).await.expect("post");
    assert_eq!(same.status(), reqwest::StatusCode::OK);
    let same: serde_json::Value = same.json().await.expect("json");
    assert_eq!(same["id"], QUEUED, "the key kept by the older build answers with its job: {same}");
    let other = keyed(2).await.expect("post");
    assert_eq!(other.status(), reqwest::StatusCode::UNPROCESSABLE_ENTITY, "another request with the kept key");
}

/// A box upgraded from job records version 4: the job it was running resumes, and its time
/// still counts from its first start, kept by the older build.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v4_database_resumes_its_running_job_from_its_first_start() {
    let (_home, d) = daemon_on(V4);
    let resumed = wait_job(&reqwest::Client::new(), &d, RUNNING, Duration::from_secs(60), is_final).await;
    assert_eq!(
        (resumed["state"].as_str(), resumed["started_at"].as_str()),
        (Some("succeeded"), Some("2023-11-14T22:13:21.500Z")),
        "{resumed}"
    );
    // Weights were not kept in its record: its kind works them out as for a new job.
    assert_eq!(resumed["stages"][0]["weight"], 1.0, "{resumed}");
}

/// A profile written before profiles named their lip-sync and upscale models loads with
/// none (the box's defaults) and keeps its picture model: the API shows both fields, and
/// `reelbox profiles show` says the box's default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v5_profile_keeps_its_picture_model_and_leaves_lipsync_and_upscale_to_the_box() {
    let (home, d) = daemon_on(V5);
    let p = get_json(&reqwest::Client::new(), &d, &format!("/api/v1/profiles/{PROFILE}")).await;
    let style = p["style"].as_object().cloned().unwrap_or_default();
    assert_eq!(style.get("image_model"), Some(&json!(PICTURE_MODEL)), "{p}");
    for field in ["lipsync_model", "upscale_model"] {
        assert_eq!(style.get(field), Some(&serde_json::Value::Null), "{field} is there, and none: {p}");
    }
    let out = run_ok(
        reelbox_cli(home.path(), &home.path().join("models")).args(["profiles", "show", PROFILE, "--url", &d.url]),
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown
            .contains(&format!("pictures {PICTURE_MODEL}\nlip-sync (the box's default)\nupscale  (the box's default)")),
        "{shown}"
    );
}

#[test]
#[ignore = "writes the frozen fixture; run by hand only before a record version is bumped"]
fn write_frozen() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let out = fixture(NEXT_FROZEN);
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), true, 8).expect("open");
        let stage = |name: &str, state: StageState, artifacts: Vec<Ulid>| Stage {
            name: name.parse().expect("a stage name"),
            state,
            artifacts,
            energy_wh: None,
        };
        let art = Artifact {
            id: Ulid::from_string("01JQ00000000000000000000A1").expect("ulid"),
            owner: "local".into(),
            job: Some(Ulid::from_string(DONE).expect("ulid")),
            stage: Some("card".into()),
            name: "testcard.png".into(),
            media_type: "image/png".into(),
            size: 3,
            sha256: "00".repeat(32),
            path: "A1/01JQ00000000000000000000A1.png".into(),
            created_at: 1_700_000_000_000,
        };
        store.put_artifact(art.clone()).await.expect("artifact");
        let base = |id: &str, state: JobState, stages: Vec<Stage>| Job {
            id: Ulid::from_string(id).expect("ulid"),
            owner: "local".into(),
            kind: "testcard".into(),
            params: r#"{"steps":1,"step_ms":0,"width":64,"height":36}"#.into(),
            priority: 0,
            state,
            attempts: 1,
            first_started_at: None,
            stages,
            idempotency_key: None,
            created_at: 1_700_000_000_000,
        };
        let card = serde_json::json!({"steps": 1, "step_ms": 0, "width": 64, "height": 36});
        let keyed = IdempotencyKey {
            key: KEY.into(),
            request: Some(reelbox::store::artifacts::sha256_bytes(format!("testcard\n{card}").as_bytes())),
        };
        let jobs = vec![
            Job {
                idempotency_key: Some(Box::new(keyed)),
                ..base(
                    QUEUED,
                    JobState::Queued { enqueued_at: 1_700_000_000_000, not_before: None },
                    vec![stage("card", StageState::Pending, vec![])],
                )
            },
            Job {
                attempts: 2,
                first_started_at: Some(1_700_000_001_500),
                ..base(
                    RUNNING,
                    JobState::Running {
                        enqueued_at: 1_700_000_000_000,
                        started_at: 1_700_000_002_000,
                        device: reelbox::gpu::DeviceId::Cpu,
                    },
                    vec![stage(
                        "card",
                        StageState::Running { started_at: 1_700_000_002_000, device: reelbox::gpu::DeviceId::Cpu },
                        vec![],
                    )],
                )
            },
            base(
                DONE,
                JobState::Succeeded { started_at: 1_700_000_000_100, finished_at: 1_700_000_000_900 },
                vec![stage(
                    "card",
                    StageState::Done {
                        started_at: 1_700_000_000_100,
                        finished_at: 1_700_000_000_800,
                        device: reelbox::gpu::DeviceId::Cpu,
                    },
                    vec![art.id],
                )],
            ),
            base(
                FAILED,
                JobState::Failed { started_at: Some(1), finished_at: 2, error: "bad model file".into() },
                vec![stage(
                    "card",
                    StageState::Failed { started_at: 1, finished_at: 2, error: "bad model file".into() },
                    vec![],
                )],
            ),
            base(
                CANCELED,
                JobState::Canceled { canceled_at: 1_700_000_001_000, reason: Some("canceled by its owner".into()) },
                vec![stage("card", StageState::Pending, vec![])],
            ),
        ];
        for job in jobs {
            store.submit(job, 100).await.expect("submit");
        }
        store
            .put_profile(Profile {
                id: Ulid::from_string(PROFILE).expect("ulid"),
                owner: "local".into(),
                name: "presenter".into(),
                portrait: None,
                face_box: Some([10, 20, 100, 120]),
                voice_sample: None,
                voice: Voice {
                    model: "en_US-joe-medium".into(),
                    speaker: None,
                    length_scale: Some(1.0),
                    noise_scale: None,
                    noise_w: None,
                },
                style: Style { image_model: Some(PICTURE_MODEL.into()), ..Style::default() },
                created_at: 1_700_000_000_000,
            })
            .await
            .expect("profile");
        store.close();
        std::fs::create_dir_all(out.parent().expect("parent")).expect("mkdir");
        std::fs::copy(dir.path().join("reelbox.redb"), &out).expect("copy out");
    });
}
