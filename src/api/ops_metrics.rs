//! Operations metrics in the Prometheus text format: jobs by state and kind, queue depth,
//! stage durations, failures and retries, model loads, HTTP requests by route and status.
//! GPU gauges live beside this in `metrics.rs`; `/metrics` joins both texts.
//!
//! Job counts are read from the store at scrape time (they survive restarts); the rest
//! are counters since this process started, fed by an HTTP middleware and by a task
//! that follows the store's event stream.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};

use axum::middleware::Next;
use axum::response::Response;
use tokio::sync::broadcast;

use super::AppState;
use crate::busy::{self, Busy};
use crate::store::JobFilter;
use crate::store::records::{EventBody, JobStatus, StageState};

const HTTP_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
const STAGE_BUCKETS: &[f64] = &[0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0];

/// A cumulative histogram with fixed upper bounds.
#[derive(Debug, Clone)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    /// An empty histogram over `bounds` (ascending, `+Inf` implied).
    pub fn new(bounds: &'static [f64]) -> Self {
        Self { bounds, counts: vec![0; bounds.len()], sum: 0.0, count: 0 }
    }

    /// Records one value.
    pub fn observe(&mut self, v: f64) {
        for (b, c) in self.bounds.iter().zip(&mut self.counts) {
            if v <= *b {
                *c += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

/// Escapes a label value for the text format.
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[derive(Default)]
struct Counters {
    http: BTreeMap<(String, String, u16), u64>,
    http_seconds: BTreeMap<String, Histogram>,
    stage_seconds: BTreeMap<(String, String), Histogram>,
    finished: BTreeMap<(String, String), u64>,
    retries: BTreeMap<String, u64>,
}

/// The process's operations counters.
#[derive(Default)]
pub struct OpsMetrics {
    c: Mutex<Counters>,
}

impl OpsMetrics {
    fn with<R>(&self, f: impl FnOnce(&mut Counters) -> R) -> R {
        f(&mut self.c.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Counts one HTTP request (`route` is the matched pattern, never the raw path, so
    /// ids do not explode the label set).
    pub fn http_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.with(|c| {
            *c.http.entry((method.to_string(), route.to_string(), status)).or_default() += 1;
            c.http_seconds.entry(route.to_string()).or_insert_with(|| Histogram::new(HTTP_BUCKETS)).observe(seconds);
        });
    }

    /// Records a job that reached a final state: its outcome and its stages' durations.
    pub fn job_finished(&self, job: &crate::store::records::Job) {
        self.with(|c| {
            *c.finished.entry((job.kind.clone(), job.state.name().to_string())).or_default() += 1;
            for s in &job.stages {
                if let StageState::Done { started_at, finished_at, .. } = s.state {
                    let secs = (finished_at - started_at).max(0) as f64 / 1000.0;
                    c.stage_seconds
                        .entry((job.kind.clone(), s.name.to_string()))
                        .or_insert_with(|| Histogram::new(STAGE_BUCKETS))
                        .observe(secs);
                }
            }
        });
    }

    /// Records a job going back to the queue after a run (retry, recovery, checkpoint).
    pub fn job_requeued(&self, kind: &str) {
        self.with(|c| *c.retries.entry(kind.to_string()).or_default() += 1);
    }
}

/// Middleware counting every request by method, matched route and status.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let t0 = Instant::now();
    let method = method_label(req.method());
    // `/jobs/{id}` is labelled `/jobs/:id`: braces in label values are valid, but naive
    // scrapers' parsers stop at the first `}`.
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().replace('{', ":").replace('}', ""));
    let resp = next.run(req).await;
    let route = route.unwrap_or_else(|| "unmatched".into());
    state.ops.http_request(method, &route, resp.status().as_u16(), t0.elapsed().as_secs_f64());
    resp
}

/// A request method as a metric label: the methods the API serves, every other (made-up)
/// method as `other`, so a client inventing methods cannot grow `/metrics` without bound.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Follows the store's events until shutdown, feeding job outcomes and stage timings.
pub fn spawn_collector(state: &AppState) -> tokio::task::JoinHandle<()> {
    let state = state.clone();
    let mut events = state.store.subscribe();
    tokio::spawn(async move {
        loop {
            let e = tokio::select! {
                e = events.recv() => e,
                _ = state.shutdown.cancelled() => return,
            };
            let e = match e {
                Ok(e) => e,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!("metrics collector skipped {n} events");
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            let EventBody::State { state: s, .. } = &e.body else { continue };
            let Ok(Some(job)) = state.store.job(e.job) else { continue };
            match s {
                s if s.is_terminal() && job.state.is_terminal() => state.ops.job_finished(&job),
                JobStatus::Queued if job.attempts > 0 => state.ops.job_requeued(&job.kind),
                _ => {}
            }
        }
    })
}

/// Free and total bytes of the data dir's and the models dir's disks, and the floor below
/// which work is refused: what an alert on a filling disk watches.
fn disk_gauges(out: &mut String, disk: &super::system::DiskView) {
    let disks = [("data", disk.data), ("models", disk.models)];
    let mut gauge = |name: &str, help: &str, value: fn(&crate::disk::Space) -> u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (dir, space) in &disks {
            if let Some(space) = space {
                let _ = writeln!(out, "{name}{{dir=\"{dir}\"}} {}", value(space));
            }
        }
    };
    gauge("reelbox_disk_free_bytes", "Bytes free on the disk of the data or models dir.", |s| s.free_bytes);
    gauge("reelbox_disk_size_bytes", "Size of the disk of the data or models dir.", |s| s.total_bytes);
    let floor = "reelbox_disk_min_free_bytes";
    let _ = writeln!(out, "# HELP {floor} limits.min_free_disk_bytes: below it work is refused.\n# TYPE {floor} gauge");
    let _ = writeln!(out, "{floor} {}", disk.min_free_bytes);
}

/// The operations metrics as Prometheus text.
pub fn render(state: &AppState) -> String {
    let mut out = String::new();
    let mut jobs: BTreeMap<(String, &'static str), u64> = BTreeMap::new();
    match state.store.list_jobs(&JobFilter::default(), None, usize::MAX) {
        Ok(list) => {
            for j in &list {
                *jobs.entry((j.kind.clone(), j.state.name())).or_default() += 1;
            }
        }
        Err(e) => tracing::warn!("metrics: cannot list jobs: {e}"),
    }
    out.push_str("# HELP reelbox_jobs Jobs in the database by kind and state.\n# TYPE reelbox_jobs gauge\n");
    for kind in state.scheduler.kind_names() {
        for st in JobStatus::ALL {
            jobs.entry((kind.to_string(), st.as_str())).or_default();
        }
    }
    for ((kind, st), n) in &jobs {
        let _ = writeln!(out, "reelbox_jobs{{kind=\"{}\",state=\"{st}\"}} {n}", escape(kind));
    }
    let depth = state.store.queued_len().unwrap_or(0);
    let _ = writeln!(out, "# HELP reelbox_queue_depth Jobs waiting to run.\n# TYPE reelbox_queue_depth gauge");
    let _ = writeln!(out, "reelbox_queue_depth {depth}");
    let _ =
        writeln!(out, "# HELP reelbox_jobs_running Jobs running in this process.\n# TYPE reelbox_jobs_running gauge");
    let _ = writeln!(out, "reelbox_jobs_running {}", state.scheduler.running_count());
    let _ = writeln!(
        out,
        "# HELP reelbox_event_streams Open SSE and WebSocket streams.\n# TYPE reelbox_event_streams gauge"
    );
    let _ = writeln!(out, "reelbox_event_streams {}", state.gate.streams.open_count());
    let _ = writeln!(
        out,
        "# HELP reelbox_uptime_seconds Seconds since the daemon started.\n# TYPE reelbox_uptime_seconds gauge"
    );
    let _ = writeln!(out, "reelbox_uptime_seconds {}", state.started.elapsed().as_secs());
    disk_gauges(&mut out, &super::system::DiskView::now(&state.config));
    let counts = state.scheduler.engine().load_counts();
    let label = |(m, d): &(String, String)| format!("model=\"{}\",device=\"{}\"", escape(m), escape(d));
    let loads = counts.iter().map(|(k, c)| (k.clone(), c.loads)).collect();
    counter(&mut out, "reelbox_model_loads_total", "Model sessions loaded, by model and device.", &loads, label);
    let unloads = counts.iter().map(|(k, c)| (k.clone(), c.unloads)).collect();
    counter(&mut out, "reelbox_model_unloads_total", "Model sessions unloaded, by model and device.", &unloads, label);
    for (name, help, what) in [
        ("reelbox_model_run_seconds_total", "Wall time spent inside model runs.", Busy::Model),
        ("reelbox_ffmpeg_wait_seconds_total", "Wall time spent blocked on ffmpeg and ffprobe.", Busy::Ffmpeg),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {:.6}", busy::total_seconds(what));
    }
    state.ops.with(|c| {
        counter(
            &mut out,
            "reelbox_jobs_finished_total",
            "Jobs that reached a final state, by kind and outcome.",
            &c.finished,
            |(k, s)| format!("kind=\"{}\",state=\"{}\"", escape(k), escape(s)),
        );
        counter(
            &mut out,
            "reelbox_job_requeues_total",
            "Jobs put back in the queue after a run (retries, recovery).",
            &c.retries,
            |k| format!("kind=\"{}\"", escape(k)),
        );
        counter(
            &mut out,
            "reelbox_http_requests_total",
            "HTTP requests by method, route and status.",
            &c.http,
            |(m, r, s)| format!("method=\"{}\",route=\"{}\",status=\"{s}\"", escape(m), escape(r)),
        );
        let _ = writeln!(out, "# HELP reelbox_http_request_duration_seconds HTTP request latency by route.");
        let _ = writeln!(out, "# TYPE reelbox_http_request_duration_seconds histogram");
        for (route, h) in &c.http_seconds {
            h.render(&mut out, "reelbox_http_request_duration_seconds", &format!("route=\"{}\"", escape(route)));
        }
        let _ = writeln!(out, "# HELP reelbox_stage_duration_seconds Wall time of finished stages by kind and stage.");
        let _ = writeln!(out, "# TYPE reelbox_stage_duration_seconds histogram");
        for ((kind, stage), h) in &c.stage_seconds {
            h.render(
                &mut out,
                "reelbox_stage_duration_seconds",
                &format!("kind=\"{}\",stage=\"{}\"", escape(kind), escape(stage)),
            );
        }
    });
    out
}

fn counter<K>(out: &mut String, name: &str, help: &str, values: &BTreeMap<K, u64>, labels: impl Fn(&K) -> String) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (k, v) in values {
        let _ = writeln!(out, "{name}{{{}}} {v}", labels(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_render_in_text_format() {
        let mut h = Histogram::new(&[1.0, 5.0]);
        for v in [0.5, 2.0, 7.0] {
            h.observe(v);
        }
        let mut out = String::new();
        h.render(&mut out, "x", "a=\"b\"");
        assert_eq!(
            out,
            "x_bucket{a=\"b\",le=\"1\"} 1\nx_bucket{a=\"b\",le=\"5\"} 2\nx_bucket{a=\"b\",le=\"+Inf\"} 3\nx_sum{a=\"b\"} 9.5\nx_count{a=\"b\"} 3\n"
        );
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
