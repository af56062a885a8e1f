//! A connection to the server, as every connection of the store is made: TLS as the
//! address asks, TCP keepalive (crate::store::link), the rows of a load handed to
//! `LOAD DATA LOCAL INFILE`, and the session's settings.

use super::error;
use crate::error::Result;
use crate::store::link;
use crate::store::mysql_address::Tls;
use mysql::{Conn, LocalInfileHandler, Opts, OptsBuilder, SslOpts};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Run on every new connection.
pub(super) const SESSION: [&str; 3] = [
    "SET SESSION sql_mode = 'ANSI_QUOTES,STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION,ERROR_FOR_DIVISION_BY_ZERO', \
     SESSION time_zone = '+00:00'",
    "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
    "SET NAMES utf8mb4",
];

pub(super) fn connect(opts: &Opts, infile: &Arc<Mutex<Vec<u8>>>, ctx: &str) -> Result<Conn> {
    let rows = Arc::clone(infile);
    let handler = LocalInfileHandler::new(move |_name, out| {
        let rows = rows.lock().map_err(|_| std::io::Error::other("the rows to load were poisoned by a panic"))?;
        out.write_all(&rows)?;
        out.flush()
    });
    let builder = OptsBuilder::from_opts(opts.clone())
        .tcp_connect_timeout(Some(Duration::from_secs(10)))
        // Notice a server whose host vanished (crate::store::link).
        .tcp_keepalive_time_ms(Some(link::IDLE.as_millis() as u32))
        .tcp_keepalive_probe_interval_secs(Some(link::INTERVAL.as_secs() as u32))
        .tcp_keepalive_probe_count(Some(link::PROBES))
        .tcp_user_timeout_ms(Some(link::USER_TIMEOUT.as_millis() as u32))
        // Connect where the address says. The driver would otherwise switch a loopback
        // connection to the server's unix socket, bypassing a tunnel or proxy on that port.
        .prefer_socket(false)
        // UPDATE reports the rows it matched, not those it changed: a heartbeat in the
        // same millisecond as the last one still says "held".
        .additional_capabilities(mysql::consts::CapabilityFlags::CLIENT_FOUND_ROWS)
        .init(SESSION.to_vec())
        .local_infile_handler(Some(handler));
    Conn::new(builder).map_err(|e| {
        if e.to_string().contains("invalid peer certificate") {
            // rustls says what failed; say what to do about it.
            let hint = "the server's TLS certificate was not accepted: give the CA that signed it as \
                        serverSslCert=/path/to/ca.pem, or encrypt without checking it (sslMode=REQUIRED)";
            return error(&format!("{ctx} ({hint})"), e);
        }
        error(ctx, e)
    })
}

/// The driver's TLS settings for `tls` (rustls; `ca`: a PEM file, else the public roots).
pub(super) fn ssl_opts(tls: Tls, ca: Option<&str>) -> Option<SslOpts> {
    let checked = |o: SslOpts| match ca {
        Some(path) => o.with_root_cert_path(Some(std::path::PathBuf::from(path))),
        None => o,
    };
    match tls {
        Tls::Off => None,
        Tls::Encrypted => {
            Some(SslOpts::default().with_danger_accept_invalid_certs(true).with_danger_skip_domain_validation(true))
        }
        Tls::VerifyCa => Some(checked(SslOpts::default()).with_danger_skip_domain_validation(true)),
        Tls::VerifyIdentity => Some(checked(SslOpts::default())),
    }
}
