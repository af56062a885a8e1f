//! MySQL and MariaDB addresses as SI users write them (issue 14): `jdbc:mysql://…`,
//! `jdbc:mariadb://…`, `mysql://…`, `mariadb://…`, with the JDBC query parameters of
//! Connector/J and MariaDB Connector/J.
//!
//! Each is turned into one `mysql://user:password@host:port/db` URL that a Rust MySQL
//! driver reads, plus a note for each JDBC parameter that is not taken as it is. A
//! parameter is honoured where it means something to Tally (`useSSL`, `sslMode`,
//! `verifyServerCertificate`, `trustServerCertificate`, `serverSslCert` → [`Tls`]). It is ignored with a note where Tally does it its own way
//! (`serverTimezone`: time stamps are epoch milliseconds; `characterEncoding`: the
//! connection is always utf8mb4). It is refused where ignoring it would surprise (a
//! character set that is not UTF-8).

use super::address::percent_encode;
use crate::error::{Error, Result};

/// A MySQL/MariaDB address, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MysqlAddress {
    /// `mysql://[user[:password]@]host[:port]/db`, with no query parameters.
    pub url: String,
    /// How the connection is secured.
    pub tls: Tls,
    /// The CA certificate (PEM file) the server's certificate is checked against
    /// (`serverSslCert`); without one, the common public CAs (webpki roots).
    pub ca: Option<String>,
    /// One line per JDBC parameter that was not taken as it is, for the node's log.
    pub notes: Vec<String>,
}

/// How a MySQL connection is secured, as the JDBC parameters ask (Connector/J 8 and
/// MariaDB Connector/J meanings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tls {
    /// Plain TCP: `useSSL=false`, `sslMode=DISABLED`, or nothing said. `sslMode=PREFERRED`
    /// is plain too (with a note): Tally does not fall back silently between the two.
    #[default]
    Off,
    /// Encrypted, the server's certificate not checked: `useSSL=true` (Connector/J 8's
    /// `REQUIRED`), `sslMode=REQUIRED`, MariaDB's `sslMode=trust`, or any TLS mode with
    /// `trustServerCertificate=true`.
    Encrypted,
    /// Encrypted, the certificate checked against the CA but not the host name:
    /// `sslMode=VERIFY_CA`, MariaDB's `verify-ca`, `useSSL=true&verifyServerCertificate=true`.
    VerifyCa,
    /// Encrypted, the certificate and the host name checked: `sslMode=VERIFY_IDENTITY`,
    /// MariaDB's `verify-full`.
    VerifyIdentity,
}

/// JDBC parameters Tally does its own way: (name, why it is ignored).
const IGNORED: &[(&str, &str)] = &[
    ("serverTimezone", "Tally stores time stamps as UTC epoch milliseconds and sets the session time zone to +00:00"),
    ("useLegacyDatetimeCode", "Tally stores time stamps as UTC epoch milliseconds"),
    ("useTimezone", "Tally stores time stamps as UTC epoch milliseconds"),
    ("useUnicode", "the connection is always utf8mb4"),
    ("autoReconnect", "a node reconnects with backoff on its own and retries the flush"),
    ("rewriteBatchedStatements", "flushes are bulk loads (LOAD DATA LOCAL INFILE) already"),
    ("allowPublicKeyRetrieval", "the driver handles caching_sha2_password itself"),
    ("zeroDateTimeBehavior", "Tally's tables have no DATETIME columns"),
    ("allowLoadLocalInfile", "Tally's bulk path always asks for LOCAL INFILE (the server needs local_infile=ON)"),
    ("allowLocalInfile", "Tally's bulk path always asks for LOCAL INFILE (the server needs local_infile=ON)"),
    ("cachePrepStmts", "no prepared statement is on the hot path"),
    ("prepStmtCacheSize", "no prepared statement is on the hot path"),
    ("useServerPrepStmts", "no prepared statement is on the hot path"),
    ("connectTimeout", "a node waits for its store as `tally.store_wait` says"),
    ("socketTimeout", "a node waits for its store as `tally.store_wait` says"),
];

/// Parses `text` (already known to start with one of the four schemes). `username` and
/// `password` (from `@store` or the data source) fill in what the URL leaves out; a
/// `user`/`password` query parameter does too.
pub fn parse(text: &str, username: Option<&str>, password: Option<&str>) -> Result<MysqlAddress> {
    let lower = text.to_ascii_lowercase();
    let rest = ["jdbc:mysql://", "jdbc:mariadb://", "mysql://", "mariadb://"]
        .iter()
        .find(|p| lower.starts_with(*p))
        .map(|p| &text[p.len()..])
        .ok_or_else(|| bad(text, "it must start with jdbc:mysql://, jdbc:mariadb://, mysql:// or mariadb://"))?;
    let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, db) = main.split_once('/').unwrap_or((main, ""));
    if db.is_empty() || db.contains('/') {
        return Err(bad(text, "name the database after the host, e.g. jdbc:mysql://localhost:3306/TEST_DB"));
    }
    let (creds, hostport) = match authority.rfind('@') {
        Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
        None => (None, authority),
    };
    if hostport.is_empty() {
        return Err(bad(text, "name the host, e.g. jdbc:mysql://localhost:3306/TEST_DB"));
    }
    if hostport.contains(',') {
        return Err(bad(text, "several hosts (fail-over or load-balanced URLs) are not supported: name one server"));
    }
    if let Some((_, port)) = hostport.rsplit_once(':')
        && !hostport.ends_with(']')
        && port.parse::<u16>().is_err()
    {
        return Err(bad(text, &format!("the port `{port}` is not a number from 0 to 65535")));
    }

    let mut notes = Vec::new();
    let (mut use_ssl, mut mode, mut verify, mut trust, mut ca) = (false, None, None, false, None);
    let (mut q_user, mut q_password) = (None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "user" => q_user = Some(value.to_string()),
            "password" => q_password = Some(value.to_string()),
            "useSSL" | "useSsl" | "requireSSL" => use_ssl |= truthy(value),
            "verifyServerCertificate" => verify = Some(truthy(value)),
            "trustServerCertificate" => trust = truthy(value),
            "serverSslCert" => ca = Some(value.to_string()),
            "trustCertificateKeyStoreUrl" | "trustStore" => {
                return Err(bad(
                    text,
                    &format!(
                        "{key} names a Java key store, which Tally cannot read: give the CA certificate as a PEM \
                         file instead, serverSslCert=/path/to/ca.pem"
                    ),
                ));
            }
            "sslMode" | "sslmode" => {
                mode = Some(match value.to_ascii_uppercase().as_str() {
                    "DISABLED" | "DISABLE" => Tls::Off,
                    "PREFERRED" => {
                        notes.push(format!(
                            "{key}={value}: Tally connects without TLS (it does not fall back between the two); \
                             use sslMode=REQUIRED to encrypt"
                        ));
                        Tls::Off
                    }
                    "REQUIRED" | "TRUST" => Tls::Encrypted,
                    "VERIFY_CA" | "VERIFY-CA" => Tls::VerifyCa,
                    "VERIFY_IDENTITY" | "VERIFY-FULL" => Tls::VerifyIdentity,
                    other => {
                        return Err(bad(
                            text,
                            &format!(
                                "sslMode `{other}` is not one of DISABLED, PREFERRED, REQUIRED, VERIFY_CA, \
                                 VERIFY_IDENTITY (or MariaDB's disable, trust, verify-ca, verify-full)"
                            ),
                        ));
                    }
                })
            }
            "characterEncoding" | "characterSetResults" => {
                let v = value.to_ascii_lowercase().replace('-', "");
                if !matches!(v.as_str(), "utf8" | "utf8mb4" | "utf8mb3") {
                    return Err(bad(
                        text,
                        &format!(
                            "{key}={value}: Tally's connections are utf8mb4; make the database UTF-8 or drop the parameter"
                        ),
                    ));
                }
                notes.push(format!("{key}={value} ignored: the connection is always utf8mb4"));
            }
            _ => match IGNORED.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)) {
                Some((k, why)) => notes.push(format!("{k}={value} ignored: {why}")),
                None => notes.push(format!("{key}={value} ignored: Tally does not know this JDBC parameter")),
            },
        }
    }

    // sslMode decides; else useSSL, checking the certificate when asked to; and
    // trustServerCertificate turns checking off.
    let mut tls = match (mode, use_ssl, verify) {
        (Some(m), _, _) => m,
        (None, true, Some(true)) => Tls::VerifyCa,
        (None, true, _) => Tls::Encrypted,
        (None, false, _) => Tls::Off,
    };
    if trust && tls != Tls::Off {
        tls = Tls::Encrypted;
    }
    if ca.is_some() && tls == Tls::Off {
        notes
            .push("serverSslCert ignored: the connection is not TLS (useSSL=true or sslMode=VERIFY_CA uses it)".into());
    }

    // The credentials: in the URL, else the query, else @store or the data source.
    let (url_user, url_password) = match creds {
        Some(c) => match c.split_once(':') {
            Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
            None => (Some(c.to_string()), None),
        },
        None => (None, None),
    };
    let user = url_user.or(q_user).or(username.map(percent_encode));
    let pass = url_password.or(q_password).or(password.map(percent_encode));
    let creds = match (&user, &pass) {
        (Some(u), Some(p)) => format!("{u}:{p}@"),
        (Some(u), None) => format!("{u}@"),
        (None, _) => String::new(),
    };
    Ok(MysqlAddress { url: format!("mysql://{creds}{hostport}/{db}"), tls, ca, notes })
}

fn truthy(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes")
}

fn bad(text: &str, why: &str) -> Error {
    Error::Schema(format!("store `{}`: {why}", super::address::redact(text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed's own `@store`, with user and password from the annotation.
    #[test]
    fn the_seed_configuration() {
        let a = parse("jdbc:mysql://localhost:3306/TEST_DB?useSSL=false", Some("root"), Some("root")).unwrap();
        assert_eq!(a.url, "mysql://root:root@localhost:3306/TEST_DB");
        assert_eq!(a.tls, Tls::Off);
        assert!(a.notes.is_empty(), "{:?}", a.notes);
    }

    #[test]
    fn schemes_credentials_and_parameters() {
        let a = parse(
            "jdbc:mariadb://db.example:3307/agg?useSSL=true&serverTimezone=UTC&characterEncoding=UTF-8&autoReconnect=true&foo=1",
            Some("u@x"),
            Some("p:w"),
        )
        .unwrap();
        assert_eq!(a.url, "mysql://u%40x:p%3Aw@db.example:3307/agg");
        assert_eq!(a.tls, Tls::Encrypted);
        assert_eq!(a.notes.len(), 4, "{:?}", a.notes);
        assert!(a.notes[0].starts_with("serverTimezone=UTC ignored: Tally stores time stamps as UTC"), "{:?}", a.notes);
        assert!(a.notes[3].contains("foo=1 ignored: Tally does not know"), "{:?}", a.notes);
        // Credentials in the URL win over the annotation's; the query's come next.
        let a = parse("mysql://me:secret@h/db", Some("root"), Some("root")).unwrap();
        assert_eq!(a.url, "mysql://me:secret@h/db");
        let a = parse("mariadb://h:3306/db?user=q&password=z&sslMode=VERIFY_IDENTITY", None, None).unwrap();
        assert_eq!((a.url.as_str(), a.tls), ("mysql://q:z@h:3306/db", Tls::VerifyIdentity));
        let a = parse("MYSQL://h/db", None, None).unwrap();
        assert_eq!(a.url, "mysql://h/db");
    }

    #[test]
    fn refusals_say_what_to_write() {
        let e = |t: &str| parse(t, None, Some("hunter2")).unwrap_err().to_string();
        assert!(e("jdbc:mysql://localhost:3306").contains("name the database"), "{}", e("jdbc:mysql://localhost:3306"));
        assert!(e("jdbc:mysql://h1,h2/db").contains("several hosts"));
        assert!(e("jdbc:mysql://h:port/db").contains("the port `port`"));
        assert!(e("jdbc:mysql://h/db?characterEncoding=latin1").contains("utf8mb4"));
        assert!(e("jdbc:mysql://h/db?sslMode=SOMETIMES").contains("sslMode `SOMETIMES`"));
        assert!(e("jdbc:mysql://h/db?useSSL=true&trustCertificateKeyStoreUrl=file:/k.jks").contains("serverSslCert="));
        // No password in a message.
        assert!(!e("mysql://u:hunter2@h:x/db").contains("hunter2"), "{}", e("mysql://u:hunter2@h:x/db"));
    }

    #[test]
    fn tls_as_connector_j_and_mariadb_connector_j_mean_it() {
        let tls = |q: &str| parse(&format!("jdbc:mysql://h/db?{q}"), None, None).unwrap();
        for (q, want) in [
            ("", Tls::Off),
            ("useSSL=false", Tls::Off),
            ("useSSL=true", Tls::Encrypted),
            ("useSSL=true&verifyServerCertificate=false", Tls::Encrypted),
            ("useSSL=true&verifyServerCertificate=true", Tls::VerifyCa),
            ("useSsl=true&trustServerCertificate=true", Tls::Encrypted),
            ("sslMode=REQUIRED", Tls::Encrypted),
            ("sslMode=trust", Tls::Encrypted),
            ("sslMode=VERIFY_CA", Tls::VerifyCa),
            ("sslMode=verify-full", Tls::VerifyIdentity),
            ("sslMode=VERIFY_IDENTITY&trustServerCertificate=true", Tls::Encrypted),
            // sslMode decides over useSSL.
            ("useSSL=true&sslMode=DISABLED", Tls::Off),
            ("sslMode=PREFERRED", Tls::Off),
        ] {
            assert_eq!(tls(q).tls, want, "{q}");
        }
        let a = tls("sslMode=VERIFY_CA&serverSslCert=/etc/tally/ca.pem");
        assert_eq!((a.tls, a.ca.as_deref()), (Tls::VerifyCa, Some("/etc/tally/ca.pem")));
        assert!(tls("sslMode=PREFERRED").notes[0].contains("without TLS"));
        assert!(tls("serverSslCert=/ca.pem").notes[0].contains("serverSslCert ignored"));
    }
}
