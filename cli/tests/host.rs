//! The store's host vanishes without a word and comes back with a fresh server: a node
//! waiting for an answer on a connection the new server never heard of must notice
//! (engine/src/store/link.rs), reconnect, and count everything once.
//!
//! A crashed host sends nothing, no FIN, no RST, which loopback cannot play: closing a
//! socket or killing a process always tells the peer. So each test runs in a network
//! namespace of its own (`unshare --net`, root only), where the database listens on an
//! extra address of the namespace's loopback. Taking that address away makes every packet
//! between the node and the server vanish; the server is killed meanwhile (its goodbyes
//! vanish too), the address comes back, and the server is started again.
//!
//! Without root, or without `unshare`, `ip`, `ss` and `sysctl`, the tests say that they were skipped and
//! why; scripts/test.sh runs as root in CI.

mod common;

use common::node::serve;
use common::{Dir, query, unique};
use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The database's address inside the namespace.
const HOST: &str = "10.87.0.1";

#[test]
fn a_node_notices_a_mysql_host_that_vanished_and_came_back() {
    in_namespace("a_node_notices_a_mysql_host_that_vanished_and_came_back", || vanished_and_came_back(Db::Mysql));
}

#[test]
fn a_node_notices_a_postgres_host_that_vanished_and_came_back() {
    in_namespace("a_node_notices_a_postgres_host_that_vanished_and_came_back", || vanished_and_came_back(Db::Postgres));
}

/// Runs `body` in this test binary started again in a network namespace of its own, or
/// says why it cannot.
fn in_namespace(test: &str, body: impl FnOnce()) {
    if std::env::var_os("TALLY_IN_NETNS").is_some() {
        return body();
    }
    let root = Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false);
    let tools = ["unshare", "ip", "ss", "sysctl"].iter().all(|t| {
        Command::new("sh").args(["-c", &format!("command -v {t}")]).output().is_ok_and(|o| o.status.success())
    });
    if !root || !tools {
        eprintln!("skipped: {test} needs root, unshare, ip, ss and sysctl (a network namespace of its own)");
        return;
    }
    let mut child = Command::new("unshare")
        .args(["--net", "--"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads", "1"])
        .env("TALLY_IN_NETNS", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A hang is a failure too, not a CI run that never ends.
    let until = Instant::now() + Duration::from_secs(300);
    while child.try_wait().unwrap().is_none() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
    }
    let timed_out = child.try_wait().unwrap().is_none();
    if timed_out {
        child.kill().ok();
    }
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!timed_out, "{test} in its namespace did not end in 300 s:\n{said}");
    assert!(out.status.success() && said.contains("1 passed"), "{test} in its namespace:\n{said}");
}

#[derive(Clone, Copy)]
enum Db {
    Mysql,
    Postgres,
}

/// A throwaway server started by scripts/{mariadb,postgres}.sh on [`HOST`], stopped when
/// dropped.
struct Server {
    db: Db,
    url: String,
    dir: String,
}

impl Server {
    fn start(db: Db) -> Server {
        let (script, host_var) = match db {
            Db::Mysql => ("mariadb.sh", "TALLY_MYSQL_HOST"),
            Db::Postgres => ("postgres.sh", "TALLY_PG_HOST"),
        };
        let out = Command::new("bash")
            .arg(scripts().join(script))
            .arg("start")
            // Durable settings (the scripts' default): the server is killed, and what it
            // acknowledged must survive that.
            .env(host_var, HOST)
            .output()
            .unwrap();
        assert!(out.status.success(), "{script} start: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}=")))
                .unwrap_or_else(|| panic!("{script} start printed no {name}: {text}"))
                .to_string()
        };
        match db {
            Db::Mysql => Server { db, url: value("MYSQL_URL"), dir: value("TALLY_MYSQL_DIR") },
            Db::Postgres => Server { db, url: value("DATABASE_URL"), dir: value("TALLY_PG_DIR") },
        }
    }

    fn run(&self, what: &str) {
        let (script, dir_var) = match self.db {
            Db::Mysql => ("mariadb.sh", "TALLY_MYSQL_DIR"),
            Db::Postgres => ("postgres.sh", "TALLY_PG_DIR"),
        };
        let out = Command::new("bash").arg(scripts().join(script)).arg(what).env(dir_var, &self.dir).output().unwrap();
        assert!(out.status.success(), "{script} {what}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Whether the node's flush waits for a lock (recording its number, behind the test's).
    fn flush_waits(&self) -> bool {
        let n = match self.db {
            // As root on the server's socket: other users' transactions need PROCESS.
            Db::Mysql => {
                let sock = format!("{}/sock", self.dir);
                let q = "SELECT COUNT(*) FROM information_schema.INNODB_TRX \
                         WHERE trx_state = 'LOCK WAIT' AND trx_query LIKE '%FLUSH_SEQ%'";
                let out = Command::new("mariadb")
                    .args(["--no-defaults", "-S", &sock, "-u", "root", "-N", "-e", q])
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0)
            }
            Db::Postgres => common::sql_i64(
                &self.url,
                "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%FLUSH_SEQ%'",
            ),
        };
        n > 0
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.run("stop");
    }
}

fn scripts() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts")
}

fn ip(args: &str) {
    let ok = Command::new("sh").args(["-c", &format!("ip {args}")]).status().unwrap().success();
    assert!(ok, "ip {args}");
}

/// A session that holds the node's registry row (as a long transaction of an operator
/// might), so that the node's next flush waits for the server's answer. The row stays
/// locked while the returned connection lives.
fn lock(db: Db, url: &str, node: &str) -> Box<dyn std::any::Any> {
    let q = format!("SELECT \"NODE_ID\" FROM \"TALLY_SHARD_REGISTRY\" WHERE \"NODE_ID\" = '{node}' FOR UPDATE");
    match db {
        Db::Mysql => {
            use mysql::prelude::Queryable;
            let mut c = common::mysql_conn(url);
            c.query_drop("BEGIN").unwrap();
            c.query_drop(&q).unwrap();
            Box::new(c)
        }
        Db::Postgres => {
            let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
            c.batch_execute(&format!("BEGIN; {q}")).unwrap();
            Box::new(c)
        }
    }
}

fn vanished_and_came_back(db: Db) {
    // A dead server's kernel gives up its unanswered goodbyes (FIN) after one retry, not
    // eight: otherwise one would still reach the node when the address comes back, which
    // a crashed host never sends. (The setting is the namespace's own.)
    let ok = Command::new("sysctl").args(["-qw", "net.ipv4.tcp_orphan_retries=1"]).status().unwrap().success();
    assert!(ok, "sysctl net.ipv4.tcp_orphan_retries=1 in the namespace");
    ip("link set lo up");
    ip(&format!("addr add {HOST}/32 dev lo"));
    let server = Server::start(db);
    let d = Dir::new();
    let name = unique("Vanish");
    let app = common::SEED_APP
        .replace("@PartitionById\n", "@PartitionById @purge(enable='false')\n")
        .replace("TradeAggregation", &name);
    let app = d.write(&format!("{name}.siddhi"), &app);
    let id = unique("vanish");
    let node = d.node_with(&id, &id, "tally:\n  flush_interval: 50ms\n");
    let mut srv = serve(&app, &node, &server.url);
    let post = |qty: i64| {
        let (http, body) = (
            srv.http.clone(),
            format!(
                "{{\"event\": {{\"symbol\": \"wso2\", \"price\": 100.0, \"quantity\": {qty}, \"timestamp\": 1710460800000}}}}"
            ),
        );
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || tx.send(common::http_request(&http, "POST", "/TradeStream", "", &body)).ok());
        rx
    };
    let first = post(30).recv_timeout(Duration::from_secs(30)).expect("the first event is answered");
    assert_eq!(first.0, 200, "{first:?}");

    // The node's next flush waits for the registry row; its heartbeat too.
    let locker = lock(db, &server.url, &id);
    let second = post(40);
    let until = Instant::now() + Duration::from_secs(20);
    while !server.flush_waits() {
        assert!(Instant::now() < until, "the node's flush never waited for the lock");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The server's kernel acknowledges the flush's statement within a delayed ACK's time;
    // a statement still unacknowledged would be sent again, and meet a reset, when the
    // host is back, which is not what is tested here.
    std::thread::sleep(Duration::from_secs(1));

    // The host vanishes: nothing more reaches it, and its server dies without a word.
    ip(&format!("addr del {HOST}/32 dev lo"));
    server.run("kill");
    drop(locker);
    // Until the dead server's kernel has dropped its unanswered goodbyes: then nothing of
    // the old server is left to answer the node.
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let states = ["-tanH", "state", "fin-wait-1", "state", "last-ack", "state", "closing"];
        let left = String::from_utf8_lossy(&Command::new("ss").args(states).output().unwrap().stdout).into_owned();
        if left.trim().is_empty() {
            break;
        }
        assert!(Instant::now() < until, "the dead server's sockets linger: {left}");
        std::thread::sleep(Duration::from_millis(100));
    }
    ip(&format!("addr add {HOST}/32 dev lo"));
    server.run("restart");

    // The node's connections wait for answers that will never come: it must notice.
    let Ok((status, _, body)) = second.recv_timeout(Duration::from_secs(60)) else {
        // Stuck for good: a SIGTERM would wait for the stuck flush too.
        let mut child = srv.child.take().expect("running");
        child.kill().ok();
        let err = String::from_utf8_lossy(&child.wait_with_output().unwrap().stderr).into_owned();
        panic!("the second event was not answered in 60 s: the node never noticed; it said:\n{err}");
    };
    let (code, err) = srv.stop();
    assert_eq!(status, 200, "{body}; the node said:\n{err}");
    let q = format!("from {name} within 0L, 4000000000000L per 'years' select sum(total) as t");
    assert_eq!(query(&app, &node, &server.url, &q)["records"], serde_json::json!([[70]]));
    assert_eq!(code, Some(0), "{err}");
}
