use super::*;
use crate::lang::plan::check;
use crate::lang::types::Value;
use crate::store::schema::TableSchema;
use crate::store::{Applied, FlushWrite, Reader, Registry, Schema, Store, Writer};

/// A store whose next write commits and then reports a lost connection: the ambiguous
/// outcome of a COMMIT whose answer never arrived.
struct CommitThenFail {
    inner: Box<dyn Store>,
    fail_next: bool,
}

impl Schema for CommitThenFail {
    fn prepare(&mut self, tables: &[TableSchema]) -> Result<()> {
        self.inner.prepare(tables)
    }
    fn migrate(&mut self, tables: &[TableSchema], shard_id: &str) -> Result<Vec<String>> {
        self.inner.migrate(tables, shard_id)
    }
}

impl Registry for CommitThenFail {
    fn register(&mut self, claim: &Claim) -> Result<i64> {
        self.inner.register(claim)
    }
    fn heartbeat(&mut self, claim: &Claim) -> Result<()> {
        self.inner.heartbeat(claim)
    }
    fn release(&mut self, claim: &Claim) -> Result<()> {
        self.inner.release(claim)
    }
}

impl crate::store::Producers for CommitThenFail {
    fn take_producer(&mut self, p: &str, claim: &Claim) -> Result<crate::store::producer::Taken> {
        self.inner.take_producer(p, claim)
    }
    fn release_producer(&mut self, p: &str, claim: &Claim) -> Result<()> {
        self.inner.release_producer(p, claim)
    }
}

impl Writer for CommitThenFail {
    fn write(&mut self, flush: &FlushWrite<'_>) -> Result<Applied> {
        let applied = self.inner.write(flush)?;
        if std::mem::take(&mut self.fail_next) {
            return Err(Error::Store {
                backend: "test",
                code: None,
                message: "connection lost after COMMIT was sent".into(),
                retryable: true,
            });
        }
        Ok(applied)
    }
    fn purge(&mut self, table: &TableSchema, before_ms: i64, shard: Option<&str>) -> Result<u64> {
        self.inner.purge(table, before_ms, shard)
    }
}

impl Reader for CommitThenFail {
    fn scan(&mut self, t: &TableSchema, start: i64, end: i64, eq: &[(usize, Value)]) -> Result<Vec<Vec<Value>>> {
        self.inner.scan(t, start, end, eq)
    }
    fn marks(&mut self, aggregation: &str) -> Result<Vec<crate::store::Mark>> {
        self.inner.marks(aggregation)
    }
    fn newest_bucket(&mut self, t: &TableSchema, shard: &str) -> Result<Option<i64>> {
        self.inner.newest_bucket(t, shard)
    }
    fn journal(&mut self, aggregation: &str, since: i64) -> Result<Vec<(String, Vec<u8>)>> {
        self.inner.journal(aggregation, since)
    }
}

impl Store for CommitThenFail {
    fn address(&self) -> &StoreAddress {
        self.inner.address()
    }
}

/// A batch that a worker cannot decode (a bug: batches are checked where they enter)
/// is not counted, and the node then commits nothing more, so nothing is acknowledged
/// that was not counted.
#[test]
fn a_batch_a_worker_cannot_read_breaks_the_node_instead_of_being_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("s.db").display());
    let cfg = NodeConfig::parse("wso2.carbon: {id: unreadable}\ntally: {workers: 1}", "n").unwrap();
    let app = "define stream S (symbol string, qty long, ts long);
         define aggregation A from S select symbol, sum(qty) as q group by symbol aggregate by ts every sec;";
    let mut node = Node::start(Arc::new(check(app, "a", &cfg).unwrap()), &cfg, Some(&url), &mut |_, _| {}).unwrap();
    push(&node, &[10]);
    node.flush().unwrap();
    let garbage = crate::aggregate::message::Batch {
        stream: 0,
        arrival_ms: 0,
        first_seq: 99,
        events: 3,
        data: vec![3, 0, 0, 0, 0xff],
    };
    node.senders[0].send(Msg::Batch(garbage)).unwrap();
    push(&node, &[20]);
    let e = node.flush().unwrap_err();
    assert!(matches!(e, Error::Internal(_)) && !e.is_retryable(), "{e}");
    let text = e.to_string();
    assert!(text.contains("worker 0 could not decode 1 batch(es) of 3 event(s) (stream `S`"), "{text}");
    push(&node, &[40]);
    assert!(matches!(node.flush(), Err(Error::Internal(_))), "and it stays broken");
    assert!(matches!(node.stop_workers(), Err(Error::Internal(_))));
    assert_eq!(totals(&mut node), vec![10], "only the flush before the bad batch committed");
}

fn push(node: &Node, qty: &[i64]) {
    let mut router = node.router();
    for (i, q) in qty.iter().enumerate() {
        router.push(0, &[Value::Str("wso2".into()), Value::Long(*q), Value::Long(1_000 + i as i64)]).unwrap();
    }
    router.send_all().unwrap();
}

/// Events of (quantity, time stamp).
fn push_at(node: &Node, events: &[(i64, i64)]) {
    let mut router = node.router();
    for (q, ts) in events {
        router.push(0, &[Value::Str("wso2".into()), Value::Long(*q), Value::Long(*ts)]).unwrap();
    }
    router.send_all().unwrap();
}

/// The total quantity a query per each duration answers.
fn answers(node: &mut Node) -> Vec<i64> {
    let plan = node.plan().clone();
    let agg = &plan.aggregations[0];
    let slot = &mut node.flusher.stores[0];
    agg.durations
        .iter()
        .map(|d| {
            let text = format!("from {} within 0L, 100000000000L per '{d}'", agg.name);
            let q = crate::query::compile_query(&plan, &text).unwrap();
            let r = crate::query::run(&plan, &q, slot.store()).unwrap();
            let col = r.columns.iter().position(|c| c == "q").unwrap();
            r.records.iter().map(|row| row[col].as_i64().unwrap()).sum()
        })
        .collect()
}

/// The total quantity in every table of the node's store, per table.
fn totals(node: &mut Node) -> Vec<i64> {
    let tables = node.flusher.tables()[0].to_vec();
    let slot = &mut node.flusher.stores[0];
    tables
        .iter()
        .map(|t| {
            let col = t.column("AGG_SUM_qty").unwrap();
            let rows = slot.store().scan(t, i64::MIN, i64::MAX, &[]).unwrap();
            rows.iter().map(|r| r[col].as_i64().unwrap()).sum()
        })
        .collect()
}

/// A flush whose commit was not confirmed is retried with its number; the store knows
/// the number and skips it, so its rows count once. On SQLite, on PostgreSQL when
/// DATABASE_URL names one, and on MySQL when MYSQL_URL does.
#[test]
fn a_flush_retried_after_an_ambiguous_commit_counts_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut urls = vec![format!("sqlite:{}", dir.path().join("s.db").display())];
    urls.extend(std::env::var("DATABASE_URL").ok().filter(|u| u.starts_with("postgres")));
    urls.extend(std::env::var("MYSQL_URL").ok().filter(|u| u.starts_with("mysql")));
    for url in urls {
        let tag = format!("{}x{}", std::process::id(), crate::time::clock::now_ms() % 1_000_000_000);
        let cfg = NodeConfig::parse(
            &format!("wso2.carbon: {{id: once{tag}}}\ntally: {{workers: 2, rollup_delay: 1ms}}"),
            "n",
        )
        .unwrap();
        let app = format!(
            "define stream S (symbol string, qty long, ts long);
             @PartitionById define aggregation Once{tag} from S select symbol, sum(qty) as q
             group by symbol aggregate by ts every sec ... day;"
        );
        let plan = Arc::new(check(&app, "a", &cfg).unwrap());
        let mut node = Node::start(plan, &cfg, Some(&url), &mut |_, _| {}).unwrap();
        let slot = &mut node.flusher.stores[0];
        let inner = crate::store::open(slot.store().address()).unwrap();
        slot.conn = Some(Box::new(CommitThenFail { inner, fail_next: true }));

        // Seconds 1 and 2 of the first minute; then an event in the second minute, whose
        // flush also rolls the (committed but unconfirmed) first minute up.
        push_at(&node, &[(10, 1_000), (20, 2_000)]);
        let e = node.flush().unwrap_err();
        assert!(e.is_retryable(), "{e}");
        assert_eq!(totals(&mut node), vec![0, 0, 0, 0], "{url}: the first attempt did commit (to the journal)");
        assert_eq!(answers(&mut node), vec![30, 30, 30, 30], "{url}: every duration answers it");
        assert!(node.pending_rows() > 0, "and the node still holds it, unconfirmed");

        push_at(&node, &[(40, 61_000)]);
        let stats = node.flush().unwrap();
        assert_eq!(stats.already_applied, 1, "{url}: the retry was recognised");
        assert_eq!(stats.closed, 2, "{url}: the two closed seconds left the journal");
        assert_eq!(stats.journaled, 1, "{url}: the open one went into it");
        assert_eq!(stats.rolled_up, 0, "{url}: minute 0 was rolled up from them, not read back");
        assert_eq!(
            (stats.row_counts.new, stats.row_counts.merged),
            ([2, 1, 0, 0, 0, 0], [0; 6]),
            "{url}: two new seconds rows, one new minute"
        );
        assert_eq!(totals(&mut node), vec![30, 30, 0, 0], "{url}: 10 + 20 once; minute 0 rolled up; 40 journaled");
        assert_eq!(answers(&mut node), vec![70, 70, 70, 70], "{url}");

        // The number continues after a restart, so the next run's flushes are not
        // mistaken for retries; the marks continue too.
        node.shutdown().unwrap();
        let mut node =
            Node::start(Arc::new(check(&app, "a", &cfg).unwrap()), &cfg, Some(&url), &mut |_, _| {}).unwrap();
        push_at(&node, &[(5, 1_500), (7, 3_600_000)]);
        let stats = node.flush().unwrap();
        assert_eq!(stats.already_applied, 0);
        assert_eq!(
            (stats.row_counts.new, stats.row_counts.merged),
            ([0, 1, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0]),
            "{url}: the late second merged into seconds and minutes; minute 1 rolled up new"
        );
        assert_eq!(answers(&mut node), vec![82, 82, 82, 82], "{url}: a late event and an hour later");
        let t = totals(&mut node);
        assert_eq!(
            (t[0], t[1]),
            (75, 75),
            "{url}: the late second went straight into seconds and minutes, then minute 1 rolled up; \
             the new hour's second is journaled"
        );
        assert_eq!(t[2], 0, "{url}: hour 0 had not closed (the newest event starts hour 1)");
        push_at(&node, &[(1, 3_601_000)]);
        node.flush().unwrap();
        assert_eq!(answers(&mut node), vec![83, 83, 83, 83], "{url}");
        assert_eq!(totals(&mut node)[2], 75, "{url}: now it has, up to the minutes rolled up before");
        node.shutdown().unwrap();
    }
}
/// Overlapped flushes (a saturated node's): each call writes what the call before it
/// prepared while it collects the next; `durable` says which collects are committed,
/// and every event is written once. On SQLite, on PostgreSQL when DATABASE_URL
/// names one, and on MySQL when MYSQL_URL does.
#[test]
fn overlapped_flushes_write_everything_once_and_say_what_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let mut urls = vec![format!("sqlite:{}", dir.path().join("s.db").display())];
    urls.extend(std::env::var("DATABASE_URL").ok().filter(|u| u.starts_with("postgres")));
    urls.extend(std::env::var("MYSQL_URL").ok().filter(|u| u.starts_with("mysql")));
    for url in urls {
        let tag = format!("{}x{}", std::process::id(), crate::time::clock::now_ms() % 1_000_000_000);
        let cfg =
            NodeConfig::parse(&format!("wso2.carbon: {{id: lap{tag}}}\ntally: {{workers: 2, rollup_delay: 1ms}}"), "n")
                .unwrap();
        let app = format!(
            "define stream S (symbol string, qty long, ts long);
             @PartitionById define aggregation Lap{tag} from S select symbol, sum(qty) as q
             group by symbol aggregate by ts every sec ... day;"
        );
        let plan = Arc::new(check(&app, "a", &cfg).unwrap());
        let mut node = Node::start(plan, &cfg, Some(&url), &mut |_, _| {}).unwrap();

        // (collect, events): seconds of minute 0, then of minute 1 (which closes minute
        // 0: it accrued in memory), then of hour 1 (which closes hour 0: its roll-up
        // reads the minutes back, so the call that does it waits for the write it
        // started, and leaves its own flush prepared for the next call).
        let collects: [(u64, &[(i64, i64)]); 12] = [
            (1, &[(10, 1_000), (20, 2_000)]),
            (2, &[(40, 3_000)]),
            (3, &[(5, 4_000)]),
            (4, &[(1, 61_000)]),
            (5, &[(2, 62_000)]),
            (7, &[(3, 63_000)]),
            (8, &[]),
            (9, &[(4, 3_601_000)]),
            (10, &[(6, 3_602_000)]),
            (11, &[]),
            (12, &[]),
            (13, &[]),
        ];
        let mut behind = 0;
        let mut read_back = 0;
        let mut events = 0;
        let mut last_durable = 0;
        for (generation, batch) in collects {
            push_at(&node, batch);
            let s = node.flush_at(generation, true).unwrap();
            events += s.events;
            read_back += s.rolled_up;
            assert!(s.durable >= last_durable && s.durable <= generation, "{url}: {s:?}");
            last_durable = s.durable;
            if s.durable < generation {
                behind += 1;
                assert!(node.pending_rows() > 0, "{url}: collect {generation} is held, prepared");
            }
            // Exactly the collects up to the durable one answer, in every duration.
            let want: i64 =
                collects.iter().filter(|(g, _)| *g <= s.durable).flat_map(|(_, b)| b.iter()).map(|e| e.0).sum();
            assert_eq!(answers(&mut node), vec![want; 4], "{url}: after collect {generation}, durable {}", s.durable);
        }
        assert_eq!(events, 9, "{url}: every event collected once");
        assert!(behind >= 3, "{url}: overlapped calls ran ({behind})");
        assert!(read_back > 0, "{url}: an overlapped call rolled hour 0 up from the stored minutes");
        assert_eq!(last_durable, 13, "{url}: idle calls catch up");
        assert_eq!(answers(&mut node), vec![91; 4], "{url}");
        node.shutdown().unwrap();
        let node = Node::start(Arc::new(check(&app, "a", &cfg).unwrap()), &cfg, Some(&url), &mut |_, _| {});
        let mut node = node.unwrap();
        assert_eq!(answers(&mut node), vec![91; 4], "{url}: and after a restart");
        assert_eq!(totals(&mut node)[0], 91, "{url}: a clean stop wrote every second");
        node.shutdown().unwrap();
    }
}
