//! A stream's annotations as SI reads them: `@source(type='http', …)` with its
//! `@map(type='json', …)`, which say where the node takes the stream's events over HTTP and
//! how their JSON maps onto the attributes.

use super::annotation::bool_value;
use crate::error::Diagnostics;
use crate::lang::syntax::ast::{self, Annotation, AnnotationElement};

/// SI's http source port when `receiver.url` is not given.
pub const DEFAULT_SOURCE_PORT: u16 = 8280;

/// How a JSON event maps onto a stream's attributes (SI's `@map(type='json')`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonMapping {
    /// `fail.on.missing.attribute` (SI's default `true`): an event that lacks an attribute
    /// is refused; with `false` the attribute is null.
    pub fail_on_missing_attribute: bool,
}

impl Default for JsonMapping {
    fn default() -> JsonMapping {
        JsonMapping { fail_on_missing_attribute: true }
    }
}

/// Where an http source listens: `receiver.url`, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverUrl {
    pub host: String,
    pub port: u16,
    /// Starts with `/`; matched exactly (the query string is not part of it).
    pub path: String,
}

/// One `@source(type='http')` of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePlan {
    /// The stream it feeds (index into the plan's streams).
    pub stream: usize,
    /// `receiver.url`; `None`: SI's default, `/<appName>/<streamName>` on port 8280,
    /// decided when the node starts (the app's name may come from its file).
    pub url: Option<ReceiverUrl>,
    /// `basic.auth.enabled`: requests need a user of `auth.configs` (HTTP basic).
    pub basic_auth: bool,
    pub mapping: JsonMapping,
}

/// The http sources and the JSON mapping of one stream, from its annotations. Other source
/// types, and options Tally does not act on, are warnings; what it cannot honour is an
/// error.
pub(super) fn check(
    s: &ast::StreamDef,
    stream: usize,
    diags: &mut Diagnostics,
    warnings: &mut Diagnostics,
) -> (Vec<SourcePlan>, JsonMapping) {
    let mut sources = Vec::new();
    for a in &s.annotations {
        if !a.is("source") {
            warnings.push(
                a.pos.line,
                a.pos.col,
                format!("@{} on stream `{}` is not known to Tally and is ignored", a.name, s.name.text),
            );
            continue;
        }
        match a.get("type") {
            Some((t, _)) if t.eq_ignore_ascii_case("http") => {}
            Some((t, pos)) => {
                warnings.push(
                    pos.line,
                    pos.col,
                    format!(
                        "@source(type='{t}') on stream `{}` is ignored: Tally takes events over HTTP \
                         (@source(type='http')), its binary protocol and JSON files",
                        s.name.text
                    ),
                );
                continue;
            }
            None => {
                diags.push(a.pos.line, a.pos.col, "@source needs a type, e.g. @source(type='http', …)");
                continue;
            }
        }
        if let Some(source) = http_source(a, stream, &s.name.text, diags, warnings) {
            sources.push(source);
        }
    }
    let mapping = sources.first().map(|s| s.mapping).unwrap_or_default();
    (sources, mapping)
}

fn http_source(
    a: &Annotation,
    stream: usize,
    stream_name: &str,
    diags: &mut Diagnostics,
    warnings: &mut Diagnostics,
) -> Option<SourcePlan> {
    let mut ok = true;
    let url = match a.get("receiver.url") {
        None => None,
        Some((text, pos)) => match receiver_url(text) {
            Ok(u) => Some(u),
            Err(m) => {
                diags.push(pos.line, pos.col, format!("@source receiver.url '{text}': {m}"));
                ok = false;
                None
            }
        },
    };
    let basic_auth = match a.get("basic.auth.enabled") {
        None => false,
        Some((v, pos)) => bool_value(v).unwrap_or_else(|| {
            diags.push(pos.line, pos.col, format!("@source basic.auth.enabled='{v}': write 'true' or 'false'"));
            ok = false;
            false
        }),
    };
    for e in &a.elements {
        if let AnnotationElement::Pair { key: Some(k), pos, .. } = e
            && !["type", "receiver.url", "basic.auth.enabled"].iter().any(|known| k.eq_ignore_ascii_case(known))
        {
            warnings.push(
                pos.line,
                pos.col,
                format!("@source option `{k}` on stream `{stream_name}` is not used by Tally and is ignored"),
            );
        }
    }
    let mapping = match a.nested("map") {
        None => JsonMapping::default(),
        Some(map) => json_mapping(map, diags, warnings)?,
    };
    ok.then_some(SourcePlan { stream, url, basic_auth, mapping })
}

fn json_mapping(map: &Annotation, diags: &mut Diagnostics, warnings: &mut Diagnostics) -> Option<JsonMapping> {
    match map.get("type") {
        Some((t, _)) if t.eq_ignore_ascii_case("json") => {}
        Some((t, pos)) => {
            diags.push(
                pos.line,
                pos.col,
                format!("@map(type='{t}') is not supported: an http source of Tally takes JSON (@map(type='json'))"),
            );
            return None;
        }
        None => {
            diags.push(map.pos.line, map.pos.col, "@map needs type='json'");
            return None;
        }
    }
    let mut mapping = JsonMapping::default();
    for e in &map.elements {
        match e {
            AnnotationElement::Pair { key: Some(k), value, pos } if k.eq_ignore_ascii_case("fail.on.missing.attribute") => {
                match bool_value(value) {
                    Some(b) => mapping.fail_on_missing_attribute = b,
                    None => diags.push(
                        pos.line,
                        pos.col,
                        format!("@map fail.on.missing.attribute='{value}': write 'true' or 'false'"),
                    ),
                }
            }
            AnnotationElement::Pair { key: Some(k), .. } if k.eq_ignore_ascii_case("type") => {}
            AnnotationElement::Pair { key: Some(k), pos, .. } => warnings.push(
                pos.line,
                pos.col,
                format!("@map option `{k}` is not used by Tally and is ignored (events are `{{\"event\": {{…}}}}`)"),
            ),
            AnnotationElement::Pair { key: None, pos, .. } | AnnotationElement::Nested(Annotation { pos, .. }) => {
                diags.push(
                    pos.line,
                    pos.col,
                    "custom JSON mappings (@attributes) are not supported: send events as {\"event\": {\"attr\": value, …}}",
                )
            }
        }
    }
    Some(mapping)
}

/// Splits `http://HOST:PORT/PATH`. The path defaults to `/`; a port is required (SI's
/// http source needs one too).
pub fn receiver_url(text: &str) -> Result<ReceiverUrl, String> {
    let t = text.trim();
    let lower = t.to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        return Err("https is not served by Tally: listen on http and terminate TLS in front of the node".into());
    } else if lower.starts_with("http://") {
        &t["http://".len()..]
    } else {
        return Err("write http://HOST:PORT/PATH".into());
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = path.split('?').next().unwrap_or("/");
    let (host, port) = authority.rsplit_once(':').ok_or("give a port, e.g. http://0.0.0.0:8006/path")?;
    let port: u16 = port.parse().map_err(|_| format!("`{port}` is not a port number"))?;
    if host.is_empty() {
        return Err("give a host, e.g. 0.0.0.0 or localhost".into());
    }
    Ok(ReceiverUrl { host: host.trim_matches(['[', ']']).to_string(), port, path: path.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receiver_urls() {
        assert_eq!(
            receiver_url("http://0.0.0.0:8006/productionStream?x=1").unwrap(),
            ReceiverUrl { host: "0.0.0.0".into(), port: 8006, path: "/productionStream".into() }
        );
        assert_eq!(receiver_url("HTTP://localhost:9").unwrap().path, "/");
        assert!(receiver_url("https://h:1/p").unwrap_err().contains("TLS"));
        assert!(receiver_url("http://h/p").unwrap_err().contains("port"));
        assert!(receiver_url("ftp://h:1/p").is_err());
    }
}
