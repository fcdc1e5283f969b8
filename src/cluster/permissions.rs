//! Per-box NATS permissions: a nats-server configuration with one nkey user per box whose
//! publish and subscribe rights cover only that box's own subjects (its work consumer,
//! its results subject, its heartbeat key, its reply inbox, its artifact bucket), plus
//! the head with all rights. The server then refuses a box that publishes a result as another or reads
//! another's work, so the result's subject proves its sender.

use super::protocol::{
    BOXES_BUCKET, RESULT_STREAM, SHARED_BUCKET_BEFORE, WORK_STREAM, box_consumer, inbox_prefix, object_bucket,
    result_subject,
};

/// A box and the public nkey (`U…`) its user signs in with.
#[derive(Clone)]
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
        // Made anew at a restart after a crash, to take back its unfinished stages at once.
        format!("$JS.API.CONSUMER.DELETE.{WORK_STREAM}.{consumer}"),
        format!("$JS.API.CONSUMER.MSG.NEXT.{WORK_STREAM}.{consumer}"),
        format!("$JS.ACK.{WORK_STREAM}.{consumer}.>"),
        result_subject(host),
        format!("$KV.{BOXES_BUCKET}.{host}"),
        // Reading its own heartbeat back: another box under its name is told apart by it.
        format!("$JS.API.DIRECT.GET.{kv_stream}.$KV.{BOXES_BUCKET}.{host}"),
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

/// First line of the users' block: what [`extend_config`] looks for in a file.
const USERS_OPEN: &str = "authorization {\n  users = [\n";
/// Last lines of the users' block.
const USERS_CLOSE: &str = "  ]\n}\n";

/// The nats-server configuration text: JetStream on (storing in `store_dir` when given,
/// which lets the server reload the file), the head with every right, each box with
/// [`worker_rights`].
pub fn server_config(head: &BoxUser, boxes: &[BoxUser], store_dir: Option<&str>) -> String {
    let mut out = String::from(
        "# Written by `reelbox cluster nats-config`: one nkey user per box, each allowed only its\n\
         # own subjects. Start: nats-server -c THIS_FILE (add -sd DIR for JetStream's storage\n\
         # unless store_dir is set below; only then does `nats-server --signal reload` work).\n",
    );
    match store_dir {
        Some(dir) => out.push_str(&format!("jetstream {{ store_dir: {dir:?} }}\n\n")),
        None => out.push_str("jetstream {}\n\n"),
    }
    out.push_str(USERS_OPEN);
    out.push_str(&head_entry(head));
    boxes.iter().for_each(|b| out.push_str(&box_entry(b)));
    out.push_str(USERS_CLOSE);
    out
}

/// The head's user: every right.
fn head_entry(head: &BoxUser) -> String {
    format!(
        "    # head {:?}: the store's owner, every right\n    {{ nkey: {:?}, permissions: {{ publish: \">\", subscribe: \">\" }} }}\n",
        head.name, head.public_key
    )
}

/// A box's user with [`worker_rights`].
fn box_entry(b: &BoxUser) -> String {
    let list = |v: &[String]| v.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ");
    let (publish, subscribe) = worker_rights(&b.name);
    format!(
        "    # box {:?}\n    {{ nkey: {:?}, permissions: {{\n      publish: {{ allow: [{}] }}\n      subscribe: {{ allow: [{}] }}\n    }} }}\n",
        b.name,
        b.public_key,
        list(&publish),
        list(&subscribe)
    )
}

/// A server config that `reelbox cluster nats-config` cannot extend.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotOurs(String);

/// A user found in a config `nats-config` wrote: the head or a box, with its entry's text.
pub struct FoundUser {
    /// Its name and public key.
    pub user: BoxUser,
    /// The head (every right) or a box.
    pub head: bool,
    /// The entry as written (comment line included).
    text: String,
}

/// The users of a config `nats-config` wrote, with the text around their block (kept as
/// it is: a `listen`, `tls` or `jetstream` block the user added stays).
pub struct ServerUsers {
    /// Text before the users' block.
    before: String,
    /// Every user, in the file's order.
    pub users: Vec<FoundUser>,
    /// Text after the users' block.
    after: String,
}

/// A box whose rights [`extend_config`] rewrote (its key kept).
pub struct Upgraded {
    /// The box.
    pub name: String,
    /// Whether its old rights were the shared artifact bucket's (before per-box buckets).
    pub shared_bucket: bool,
}

/// Reads the users of a config `nats-config` wrote: each under its `# head "NAME"` or
/// `# box "NAME"` comment. Anything else in the users' block is refused, not dropped.
pub fn read_users(text: &str) -> Result<ServerUsers, NotOurs> {
    let Some(open) = text.find(USERS_OPEN) else {
        return Err(NotOurs(
            "it has no `authorization { users = [` block as `reelbox cluster nats-config` writes".into(),
        ));
    };
    let body_at = open + USERS_OPEN.len();
    let Some(close) = text[body_at..].find(USERS_CLOSE).map(|c| body_at + c) else {
        return Err(NotOurs("its users' block does not end as `reelbox cluster nats-config` writes it".into()));
    };
    let mut users: Vec<FoundUser> = Vec::new();
    for line in text[body_at..close].split_inclusive('\n') {
        let t = line.trim();
        let marker = [("# head \"", true), ("# box \"", false)]
            .into_iter()
            .find_map(|(m, head)| t.strip_prefix(m).map(|rest| (rest, head)));
        if let Some((rest, head)) = marker {
            let name = rest.split('"').next().unwrap_or_default().to_string();
            // It becomes subjects in the rewritten rights: a hand-edited name must still be one.
            crate::config::cluster::check_name(&name).map_err(|e| NotOurs(format!("a user's comment: {e}")))?;
            let user = BoxUser { name, public_key: String::new() };
            users.push(FoundUser { user, head, text: String::new() });
        }
        match users.last_mut() {
            Some(u) => u.text.push_str(line),
            None if t.is_empty() => {}
            None => return Err(NotOurs(format!("a user without its `# box \"NAME\"` comment: {t}"))),
        }
    }
    for u in &mut users {
        // One user per comment: a user added by hand below one would be lost on rewriting.
        let entries = u.text.lines().filter(|l| l.trim_start().starts_with('{')).count();
        if entries != 1 {
            return Err(NotOurs(format!("{entries} users under the comment of {:?}, not one", u.user.name)));
        }
        let keys: Vec<&str> = u.text.split("nkey: \"").skip(1).filter_map(|r| r.split('"').next()).collect();
        let [key] = keys[..] else {
            return Err(NotOurs(format!("the entry of {:?} has {} nkeys, not one", u.user.name, keys.len())));
        };
        if nkeys::KeyPair::from_public_key(key).is_err() || !key.starts_with('U') {
            return Err(NotOurs(format!("the entry of {:?} has no public user nkey (U…): {key:?}", u.user.name)));
        }
        u.user.public_key = key.to_string();
    }
    if users.iter().filter(|u| u.head).count() != 1 {
        return Err(NotOurs("it has no single `# head` user".into()));
    }
    let after = text[close + USERS_CLOSE.len()..].to_string();
    Ok(ServerUsers { before: text[..open].to_string(), users, after })
}

/// The config with `added` boxes appended: every user already there keeps its key, the
/// head's entry stays byte for byte, and each box's rights become [`worker_rights`]
/// (already so for a config this reelbox wrote; an older one's are rewritten and listed).
pub fn extend_config(found: &ServerUsers, added: &[BoxUser]) -> (String, Vec<Upgraded>) {
    let mut out = format!("{}{USERS_OPEN}", found.before);
    let mut upgraded = Vec::new();
    for u in &found.users {
        if u.head {
            out.push_str(&u.text);
            continue;
        }
        let now = box_entry(&u.user);
        if now != u.text {
            let shared = format!("\"$O.{SHARED_BUCKET_BEFORE}.>\"");
            upgraded.push(Upgraded { name: u.user.name.clone(), shared_bucket: u.text.contains(&shared) });
        }
        out.push_str(&now);
    }
    added.iter().for_each(|b| out.push_str(&box_entry(b)));
    out.push_str(USERS_CLOSE);
    out.push_str(&found.after);
    (out, upgraded)
}

/// The config without the users of `removed` (box names): every other user's text, the
/// head's included, stays byte for byte, and so does the text around the block.
pub fn remove_users(found: &ServerUsers, removed: &[String]) -> String {
    let mut out = format!("{}{USERS_OPEN}", found.before);
    for u in found.users.iter().filter(|u| u.head || !removed.contains(&u.user.name)) {
        out.push_str(&u.text);
    }
    out.push_str(USERS_CLOSE);
    out.push_str(&found.after);
    out
}

impl ServerUsers {
    /// Whether the file names JetStream's store dir (`store_dir`) outside the users' block:
    /// only then does `nats-server --signal reload` apply it (a server started with `-sd`
    /// refuses to reload).
    pub fn names_store_dir(&self) -> bool {
        let names = |t: &str| t.lines().any(|l| !l.trim_start().starts_with('#') && l.contains("store_dir"));
        names(&self.before) || names(&self.after)
    }
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
        assert!(publish.contains(&"$JS.API.CONSUMER.DELETE.REELBOX_WORK.box-w1".to_string()));
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
            Some("/var/lib/nats"),
        );
        assert!(text.contains("\njetstream { store_dir: \"/var/lib/nats\" }\n"), "{text}");
        assert!(text.contains("{ nkey: \"UHEAD\", permissions: { publish: \">\", subscribe: \">\" } }"), "{text}");
        assert!(text.contains("nkey: \"UW1\"") && text.contains("\"$KV.reelbox_boxes.w1\""), "{text}");
    }

    #[test]
    fn extending_a_config_keeps_its_users_and_rewrites_only_old_rights() {
        let key = |_| nkeys::KeyPair::new_user().public_key();
        let head = BoxUser { name: "head".into(), public_key: key(0) };
        let w1 = BoxUser { name: "w1".into(), public_key: key(1) };
        let text = format!("listen: 4222\n{}# mine\n", server_config(&head, std::slice::from_ref(&w1), None));
        let found = read_users(&text).expect("ours");
        let names: Vec<_> = found.users.iter().map(|u| (u.user.name.as_str(), u.head)).collect();
        assert_eq!(names, [("head", true), ("w1", false)]);
        assert_eq!(found.users[1].user.public_key, w1.public_key);
        let (same, upgraded) = extend_config(&found, &[]);
        assert!(same == text && upgraded.is_empty(), "nothing added, nothing changes");
        let w3 = BoxUser { name: "w3".into(), public_key: key(3) };
        let (grown, _) = extend_config(&found, std::slice::from_ref(&w3));
        assert!(grown.starts_with("listen: 4222\n") && grown.ends_with("  ]\n}\n# mine\n"), "{grown}");
        assert_eq!(grown, format!("listen: 4222\n{}# mine\n", server_config(&head, &[w1, w3], None)));

        // Before per-box buckets, every box had the shared bucket's rights.
        let old = text.replace("$O.reelbox_artifacts_w1.>", "$O.reelbox_artifacts.>");
        let (fixed, upgraded) = extend_config(&read_users(&old).expect("ours"), &[]);
        assert_eq!(fixed, text, "rewritten to today's rights");
        assert!(upgraded.len() == 1 && upgraded[0].name == "w1" && upgraded[0].shared_bucket);

        assert!(read_users("jetstream {}\n").is_err(), "no users' block");
        // A user added by hand is refused, not dropped.
        let first = text.replace(USERS_OPEN, &format!("{USERS_OPEN}    {{ user: \"a\", password: \"b\" }}\n"));
        let e = read_users(&first).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("without its `# box"), "{e}");
        let after = text.replace("    # box \"w1\"\n", "");
        let e = read_users(&after).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("2 users under the comment of \"head\""), "{e}");
    }

    #[test]
    fn removing_boxes_keeps_every_other_user_byte_for_byte() {
        let key = |_| nkeys::KeyPair::new_user().public_key();
        let user = |name: &str| BoxUser { name: name.into(), public_key: key(0) };
        let (head, w1, w2, w3) = (user("head"), user("w1"), user("w2"), user("w3"));
        let text = format!("listen: 4222\n{}# mine\n", server_config(&head, &[w1.clone(), w2, w3], None));
        // w2's rights edited by hand: removing another box must not rewrite them.
        let text = text.replacen("\"reelbox.progress.w2.>\"", "\"reelbox.progress.w2.>\", \"mine.>\"", 1);
        let found = read_users(&text).expect("ours");
        assert!(!found.names_store_dir(), "written without --store-dir");
        let fewer = remove_users(&found, &["w3".into(), "head".into()]);
        let w3_entry = &found.users[3].text;
        assert_eq!(fewer, text.replace(w3_entry.as_str(), ""), "w3 gone, the head kept, the rest as it was");
        assert!(fewer.contains("\"mine.>\""), "w2's hand edit stays");
        let stored = server_config(&head, &[w1], Some("/var/lib/nats"));
        assert!(read_users(&stored).expect("ours").names_store_dir());
    }
}
