//! Per-box NATS permissions: a nats-server configuration with one nkey user per box whose
//! publish and subscribe rights cover only that box's own subjects (its work consumer,
//! its results subject, its heartbeat key, its reply inbox, its artifact bucket), plus
//! the head with all rights. The server then refuses a box that publishes a result as another or reads
//! another's work, so the result's subject proves its sender.

use super::protocol::{
    BOXES_BUCKET, RESULT_STREAM, WORK_STREAM, box_consumer, inbox_prefix, object_bucket, result_subject,
};

/// A box and the public nkey (`U…`) its user signs in with.
pub struct BoxUser {
    /// The box name (`cluster.name`).
    pub name: String,
    /// Its public user nkey.
    pub public_key: String,
}

/// Subjects a worker box may publish to and subscribe to. No stream may be made or
/// changed (the head does that); the box binds the shared streams and its own bucket.
pub fn worker_rights(host: &str) -> (Vec<String>, Vec<String>) {
    let consumer = box_consumer(host);
    let kv_stream = format!("KV_{BOXES_BUCKET}");
    let bucket = object_bucket(host);
    let obj_stream = format!("OBJ_{bucket}");
    let mut publish = vec!["$JS.API.INFO".to_string()];
    for stream in [WORK_STREAM, RESULT_STREAM, kv_stream.as_str(), obj_stream.as_str()] {
        publish.push(format!("$JS.API.STREAM.INFO.{stream}"));
    }
    publish.extend([
        // Its own durable consumer of its own work subject, and acks of what it fetched.
        format!("$JS.API.CONSUMER.CREATE.{WORK_STREAM}.{consumer}"),
        format!("$JS.API.CONSUMER.CREATE.{WORK_STREAM}.{consumer}.>"),
        format!("$JS.API.CONSUMER.DURABLE.CREATE.{WORK_STREAM}.{consumer}"),
        format!("$JS.API.CONSUMER.INFO.{WORK_STREAM}.{consumer}"),
        format!("$JS.API.CONSUMER.MSG.NEXT.{WORK_STREAM}.{consumer}"),
        format!("$JS.ACK.{WORK_STREAM}.{consumer}.>"),
        result_subject(host),
        format!("$KV.{BOXES_BUCKET}.{host}"),
        format!("reelbox.progress.{host}.>"),
        // Its own artifact bucket: it reads its inputs there and writes its outputs.
        format!("$O.{bucket}.>"),
        format!("$JS.API.CONSUMER.CREATE.{obj_stream}"),
        format!("$JS.API.CONSUMER.CREATE.{obj_stream}.>"),
        format!("$JS.API.CONSUMER.DELETE.{obj_stream}.>"),
        format!("$JS.API.CONSUMER.INFO.{obj_stream}.>"),
        format!("$JS.API.DIRECT.GET.{obj_stream}"),
        format!("$JS.API.DIRECT.GET.{obj_stream}.>"),
        format!("$JS.API.STREAM.MSG.GET.{obj_stream}"),
        format!("$JS.API.STREAM.PURGE.{obj_stream}"),
        format!("$JS.FC.{obj_stream}.>"),
    ]);
    let subscribe = vec![format!("{}.>", inbox_prefix(host)), "reelbox.cancel.*".to_string()];
    (publish, subscribe)
}

/// The nats-server configuration text: JetStream on, the head with every right, each box
/// with [`worker_rights`].
pub fn server_config(head: &BoxUser, boxes: &[BoxUser]) -> String {
    let list = |v: &[String]| v.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ");
    let mut out = String::from(
        "# Written by `reelbox cluster nats-config`: one nkey user per box, each allowed only its\n\
         # own subjects. Start: nats-server -c THIS_FILE (add -sd DIR for JetStream's storage).\n\
         jetstream {}\n\nauthorization {\n  users = [\n",
    );
    out.push_str(&format!(
        "    # head {:?}: the store's owner, every right\n    {{ nkey: {:?}, permissions: {{ publish: \">\", subscribe: \">\" }} }}\n",
        head.name, head.public_key
    ));
    for b in boxes {
        let (publish, subscribe) = worker_rights(&b.name);
        out.push_str(&format!(
            "    # box {:?}\n    {{ nkey: {:?}, permissions: {{\n      publish: {{ allow: [{}] }}\n      subscribe: {{ allow: [{}] }}\n    }} }}\n",
            b.name,
            b.public_key,
            list(&publish),
            list(&subscribe)
        ));
    }
    out.push_str("  ]\n}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_box_may_use_only_its_own_subjects() {
        let (publish, subscribe) = worker_rights("w1");
        assert!(publish.contains(&"reelbox.result.w1".to_string()));
        assert!(publish.contains(&"$KV.reelbox_boxes.w1".to_string()));
        assert!(publish.contains(&"reelbox.progress.w1.>".to_string()));
        assert!(publish.contains(&"$JS.API.CONSUMER.MSG.NEXT.REELBOX_WORK.box-w1".to_string()));
        let all = publish.iter().chain(&subscribe).cloned().collect::<Vec<_>>().join(" ");
        assert!(!all.contains("w2") && !all.contains("reelbox.work") && !all.contains("reelbox.result.>"), "{all}");
        assert!(!all.contains("STREAM.CREATE") && !all.contains("STREAM.UPDATE"), "the head makes streams: {all}");
        assert!(publish.contains(&"$O.reelbox_artifacts_w1.>".to_string()), "{all}");
        let shared = publish.iter().find(|p| p.contains("artifacts") && !p.contains("reelbox_artifacts_w1"));
        assert_eq!(shared, None, "only its own bucket");
        assert_eq!(subscribe, ["_INBOX_w1.>", "reelbox.cancel.*"]);
        let text = server_config(
            &BoxUser { name: "head".into(), public_key: "UHEAD".into() },
            &[BoxUser { name: "w1".into(), public_key: "UW1".into() }],
        );
        assert!(text.contains("{ nkey: \"UHEAD\", permissions: { publish: \">\", subscribe: \">\" } }"), "{text}");
        assert!(text.contains("nkey: \"UW1\"") && text.contains("\"$KV.reelbox_boxes.w1\""), "{text}");
    }
}
