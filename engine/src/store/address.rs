//! Store addresses: `sqlite:PATH`, `jdbc:sqlite:PATH`, `postgres://…`, `postgresql://…`,
//! `jdbc:postgresql://host:port/db`, and MySQL/MariaDB's four forms
//! ([`super::mysql_address`]).

use crate::error::{Error, Result};
use crate::lang::plan::{AggPlan, AppPlan};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreAddress {
    /// The embedded default: one SQLite file, shared safely by several node processes.
    Sqlite { path: PathBuf },
    /// A PostgreSQL connection URL (`postgresql://user:password@host:port/db?...`).
    Postgres { url: String },
    /// MySQL/MariaDB, normalised from any of its four forms (the store itself is issue 14's
    /// work: opening one says it is not supported yet).
    Mysql(super::mysql_address::MysqlAddress),
}

impl StoreAddress {
    /// Parses an address; `username` and `password` (from `@store` or a data source) fill
    /// in what a JDBC URL leaves out.
    pub fn parse(text: &str, username: Option<&str>, password: Option<&str>) -> Result<StoreAddress> {
        let t = text.trim();
        let lower = t.to_ascii_lowercase();
        if let Some(rest) = strip(t, &lower, "jdbc:sqlite:").or_else(|| strip(t, &lower, "sqlite:")) {
            // `sqlite:///abs/path` and `sqlite://rel/path` are taken too.
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(Error::Schema(format!("store `{t}`: give a file, e.g. sqlite:tally.db")));
            }
            return Ok(StoreAddress::Sqlite { path: PathBuf::from(path) });
        }
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            return Ok(StoreAddress::Postgres { url: with_credentials(t, username, password) });
        }
        if let Some(rest) = strip(t, &lower, "jdbc:postgresql:") {
            let rest = rest.strip_prefix("//").unwrap_or(rest);
            return Ok(StoreAddress::Postgres {
                url: with_credentials(&format!("postgresql://{rest}"), username, password),
            });
        }
        if ["jdbc:mysql:", "jdbc:mariadb:", "mysql://", "mariadb://"].iter().any(|p| lower.starts_with(p)) {
            return Ok(StoreAddress::Mysql(super::mysql_address::parse(t, username, password)?));
        }
        Err(Error::Schema(format!(
            "store `{t}` is not an address Tally knows: use sqlite:PATH, jdbc:sqlite:PATH, \
             postgres://…, postgresql://…, jdbc:postgresql://host:port/db, mysql://…, mariadb://…, \
             jdbc:mysql://host:port/db or jdbc:mariadb://host:port/db"
        )))
    }

    /// The address with any password replaced by `***`, for logs and messages.
    pub fn redacted(&self) -> String {
        match self {
            StoreAddress::Sqlite { path } => format!("sqlite:{}", path.display()),
            StoreAddress::Postgres { url } | StoreAddress::Mysql(super::mysql_address::MysqlAddress { url, .. }) => {
                redact(url)
            }
        }
    }
}

fn strip<'a>(text: &'a str, lower: &str, prefix: &str) -> Option<&'a str> {
    lower.starts_with(prefix).then(|| &text[prefix.len()..])
}

/// Puts user and password into a URL that has none.
fn with_credentials(url: &str, username: Option<&str>, password: Option<&str>) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    if rest[..authority_end].contains('@') || username.is_none() {
        return url.to_string();
    }
    let mut creds = percent_encode(username.unwrap_or_default());
    if let Some(p) = password {
        creds.push(':');
        creds.push_str(&percent_encode(p));
    }
    format!("{scheme}://{creds}@{rest}")
}

/// `s` with everything but unreserved URL characters percent-encoded (user names and
/// passwords put into a URL).
pub(super) fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(super) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{}", &rest[at + 1..])
        }
        None => url.to_string(),
    }
}

/// The distinct stores the app's aggregations use, each with the aggregations it holds.
/// `override_url` (the `--store` option) replaces them all; otherwise each aggregation's
/// `@store`, else `default_url`.
pub fn by_store(
    plan: &AppPlan,
    override_url: Option<&str>,
    default_url: &str,
) -> Result<Vec<(StoreAddress, Vec<usize>)>> {
    let mut slots: Vec<(StoreAddress, Vec<usize>)> = Vec::new();
    for (i, agg) in plan.aggregations.iter().enumerate() {
        let address = resolve(agg, override_url, default_url)?;
        match slots.iter_mut().find(|(a, _)| *a == address) {
            Some((_, aggs)) => aggs.push(i),
            None => slots.push((address, vec![i])),
        }
    }
    Ok(slots)
}

/// The store address of one aggregation.
pub fn resolve(agg: &AggPlan, override_url: Option<&str>, default_url: &str) -> Result<StoreAddress> {
    match (override_url, &agg.store) {
        (Some(url), _) => StoreAddress::parse(url, None, None),
        (None, Some(spec)) => StoreAddress::parse(&spec.url, spec.username.as_deref(), spec.password.as_deref())
            .map_err(|e| Error::Schema(format!("aggregation `{}` ({}): {e}", agg.name, spec.origin))),
        (None, None) => StoreAddress::parse(default_url, None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(
            StoreAddress::parse("sqlite:/tmp/a.db", None, None).unwrap(),
            StoreAddress::Sqlite { path: "/tmp/a.db".into() }
        );
        assert_eq!(
            StoreAddress::parse("jdbc:sqlite:rel.db", None, None).unwrap(),
            StoreAddress::Sqlite { path: "rel.db".into() }
        );
        assert_eq!(
            StoreAddress::parse("sqlite:///abs.db", None, None).unwrap(),
            StoreAddress::Sqlite { path: "/abs.db".into() }
        );
        assert_eq!(
            StoreAddress::parse("jdbc:postgresql://127.0.0.1:5432/test", Some("root"), Some("p@ss")).unwrap(),
            StoreAddress::Postgres { url: "postgresql://root:p%40ss@127.0.0.1:5432/test".into() }
        );
        assert_eq!(
            StoreAddress::parse("postgres://u:x@h/db", Some("other"), None).unwrap(),
            StoreAddress::Postgres { url: "postgres://u:x@h/db".into() }
        );
        assert!(matches!(StoreAddress::parse("jdbc:mysql://h/db", None, None).unwrap(), StoreAddress::Mysql(_)));
        let e = StoreAddress::parse("mongodb://h", None, None).unwrap_err().to_string();
        assert!(e.contains("sqlite:PATH"), "{e}");
        assert!(StoreAddress::parse("sqlite:", None, None).is_err());
    }

    #[test]
    fn redaction() {
        let a = StoreAddress::parse("jdbc:postgresql://h:5432/db", Some("root"), Some("secret")).unwrap();
        assert_eq!(a.redacted(), "postgresql://root:***@h:5432/db");
        assert!(!a.redacted().contains("secret"));
    }
}
