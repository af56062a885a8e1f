//! Tests of the MySQL store that need no table of an aggregation: errors, and the locks
//! and collations of its own tables (on a real server when `MYSQL_URL` names one).

use super::*;

#[test]
fn server_errors_carry_number_sqlstate_and_whether_to_retry() {
    let e = error(
        "cannot write",
        mysql::Error::MySqlError(mysql::MySqlError {
            state: "40001".into(),
            message: "Deadlock found".into(),
            code: 1213,
        }),
    );
    assert_eq!(e.to_string(), "mysql store: cannot write: ERROR 1213 (40001): Deadlock found (SQLSTATE 40001)");
    assert!(e.is_retryable());
    let e = error(
        "cannot write",
        mysql::Error::MySqlError(mysql::MySqlError { state: "42000".into(), message: "syntax".into(), code: 1064 }),
    );
    assert!(!e.is_retryable());
}

/// The CI run met ERROR 1213 on a HELLO: `INSERT IGNORE` had taken a shared lock on the
/// existing row and the take's `FOR UPDATE` had to upgrade it. The first statement of
/// a take must lock the row exclusively: a shared lock from another connection then
/// waits (here until a one-second lock timeout) instead of being granted beside it.
#[test]
fn a_take_locks_the_producer_row_exclusively_from_its_first_statement() {
    let Ok(url) = std::env::var("MYSQL_URL") else { return };
    let open = || MysqlStore::open(StoreAddress::parse(&url, None, None).unwrap()).unwrap();
    let (mut taker, mut other) = (open(), open());
    let p = format!("lock_probe_{}_{}", std::process::id(), now_ms());
    let collation = taker.collation.clone();
    taker
        .with(|c| {
            c.query_drop(binary(&stmt(prod::CREATE), &collation)).map_err(|e| error("create", e))?;
            c.exec_drop(PRODUCERS_ENSURE_PLAIN, named(vec![text(&p), int(now_ms())])).map_err(|e| error("seed", e))
        })
        .unwrap();
    let outcome = taker
        .with(|c| {
            let mut tx = c.start_transaction(TxOpts::default()).map_err(|e| error("begin", e))?;
            tx.exec_drop(statements::PRODUCERS_ENSURE, named(vec![text(&p), int(now_ms())]))
                .map_err(|e| error("ensure", e))?;
            let shared = other.with(|o| {
                o.query_drop("SET SESSION innodb_lock_wait_timeout = 1").map_err(|e| error("timeout", e))?;
                o.exec_drop(
                    "SELECT \"HOLDER\" FROM \"TALLY_PRODUCERS\" WHERE \"PRODUCER\" = :p1 LOCK IN SHARE MODE",
                    named(vec![text(&p)]),
                )
                .map_err(|e| error("share", e))
            });
            tx.rollback().map_err(|e| error("rollback", e))?;
            Ok(shared)
        })
        .unwrap();
    match outcome {
        Err(Error::Store { message, .. }) => assert!(message.contains("ERROR 1205"), "{message}"),
        other => panic!("a shared lock was granted beside the take's: {other:?}"),
    }
}

/// Makes the row outside any test transaction.
const PRODUCERS_ENSURE_PLAIN: &str = "INSERT IGNORE INTO \"TALLY_PRODUCERS\" (\"PRODUCER\", \"HOLDER\", \
    \"NODE_ID\", \"MAX_SEQ\", \"UPDATED_MS\") VALUES (:p1, NULL, NULL, 0, :p2)";

/// An SI database usually has a case-insensitive default collation (`utf8mb4_general_ci`,
/// as the throwaway server of the tests has). Tally's own tables must not inherit it:
/// producers `p` and `P` are two producers, each with its own holder and sequence numbers.
#[test]
fn producers_differing_in_case_or_a_trailing_space_are_different_producers() {
    let Ok(url) = std::env::var("MYSQL_URL") else { return };
    let open = || MysqlStore::open(StoreAddress::parse(&url, None, None).unwrap()).unwrap();
    let tag = format!("{}_{}", std::process::id(), now_ms());
    let (mut a, mut b) = (open(), open());
    let (ca, cb) = (Claim::new(Some(&format!("case-a-{tag}")), None), Claim::new(Some(&format!("case-b-{tag}")), None));
    a.register(&ca).unwrap();
    b.register(&cb).unwrap();
    let p = format!("case_p_{tag}");
    a.take_producer(&p, &ca).unwrap();
    for other in [p.to_uppercase(), format!("{p} ")] {
        b.take_producer(&other, &cb).unwrap_or_else(|e| panic!("`{other}` is not `{p}`: {e}"));
    }
    let held = b.take_producer(&p, &cb).unwrap_err();
    assert!(matches!(held, Error::ProducerHeld(_)), "{held}");
    for (s, c) in [(&mut a, &ca), (&mut b, &cb)] {
        s.release(c).unwrap();
    }
}

/// `useSSL` and `sslMode` as SI users write them reach the server as TLS: a user the server
/// admits only over TLS (`REQUIRE SSL`) is refused on a plain connection and let in with
/// `useSSL=true`; `VERIFY_IDENTITY` checks the certificate against `serverSslCert`, and
/// `VERIFY_CA` without it against the public roots, which refuse the test server's own CA.
/// Needs the server of scripts/mariadb.sh (its root socket and CA in `TALLY_MYSQL_DIR`).
#[test]
fn tls_as_the_jdbc_parameters_ask_it() {
    let (Ok(url), Ok(dir)) = (std::env::var("MYSQL_URL"), std::env::var("TALLY_MYSQL_DIR")) else {
        eprintln!("skipped: needs MYSQL_URL and TALLY_MYSQL_DIR (scripts/mariadb.sh start sets both)");
        return;
    };
    let user = format!("tls{}", std::process::id());
    let root = |sql: &str| {
        let out = std::process::Command::new("mariadb")
            .args(["--no-defaults", "-S", &format!("{dir}/sock"), "-u", "root", "-e", sql])
            .output()
            .unwrap();
        assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    };
    root(&format!(
        "CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY 'pw' REQUIRE SSL; GRANT ALL ON tally.* TO '{user}'@'127.0.0.1'"
    ));
    let hostport = url.split('@').nth(1).and_then(|r| r.split('/').next()).unwrap().to_string();
    let open = |q: &str| {
        let address = StoreAddress::parse(&format!("jdbc:mysql://{hostport}/tally?{q}"), Some(&user), Some("pw"));
        MysqlStore::open(address.unwrap())
    };
    let plain = open("useSSL=false").unwrap_err().to_string();
    assert!(plain.contains("1045"), "a plain connection is refused by the server: {plain}");
    open("useSSL=true").unwrap();
    open(&format!("sslMode=VERIFY_IDENTITY&serverSslCert={dir}/tls/ca.pem")).unwrap();
    let unknown = open("sslMode=VERIFY_CA").unwrap_err().to_string();
    assert!(unknown.contains("UnknownIssuer") && unknown.contains("serverSslCert="), "{unknown}");
    root(&format!("DROP USER '{user}'@'127.0.0.1'"));
}
