use super::*;
use crate::config::NodeConfig;

fn cfg(yaml: &str) -> NodeConfig {
    NodeConfig::parse(yaml, "node.yaml").unwrap()
}

fn plan(app: &str) -> AppPlan {
    check(app, "app.siddhi", &cfg("wso2.carbon: {id: n1}")).unwrap_or_else(|e| panic!("{e}"))
}

fn errors(app: &str, yaml: &str) -> String {
    check(app, "app.siddhi", &cfg(yaml)).unwrap_err().to_string()
}

const STOCK: &str = "define stream stockStream (symbol string, price float, lastClosingPrice float, volume long, quantity int, timestamp long);\n";

#[test]
fn seed_app_plan() {
    let p = plan(
        "define stream TradeStream (symbol string, price double, quantity long, timestamp long);
         @PartitionById
         define aggregation TradeAggregation from TradeStream
         select symbol, avg(price) as avgPrice, sum(quantity) as total
         group by symbol aggregate by timestamp every sec ... year;",
    );
    let a = &p.aggregations[0];
    assert_eq!(a.durations, Granularity::ALL.to_vec());
    assert_eq!(a.time, TimeSource::Millis(3));
    assert_eq!(a.group_by, vec![0]);
    assert!(a.partitioned);
    assert_eq!(a.shard_id.as_deref(), Some("n1"));
    let cols: Vec<Option<&str>> = a.cells.iter().map(|c| c.column.as_deref()).collect();
    assert_eq!(cols, vec![Some("AGG_SUM_price"), Some("AGG_COUNT_price"), Some("AGG_SUM_quantity"), None]);
    assert_eq!(a.outputs.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(), ["symbol", "avgPrice", "total"]);
    assert_eq!(a.outputs[2].ty, AttrType::Long);
    assert_eq!(p.streams[0].route_key, vec![0]);
    assert_eq!(a.table_name(Granularity::Hours), "TradeAggregation_HOURS");
}

#[test]
fn cells_are_shared_and_latest_values_typed() {
    let p = plan(&format!(
        "{STOCK}define aggregation A from stockStream select symbol, avg(price) as avgPrice, sum(price) as totalPrice, \
         (price * quantity) as lastTradeValue, max(price) as maxPrice, count() as n, distinctCount(symbol) as d \
         aggregate by timestamp every min, day, year;"
    ));
    let a = &p.aggregations[0];
    assert_eq!(a.durations, vec![Granularity::Minutes, Granularity::Days, Granularity::Years]);
    let kinds: Vec<CellKind> = a.cells.iter().map(|c| c.kind).collect();
    assert_eq!(kinds, vec![CellKind::Sum, CellKind::NonNull, CellKind::Max, CellKind::Count, CellKind::Set]);
    assert_eq!(a.latest.len(), 2, "symbol (not grouped) and price * quantity");
    assert_eq!(a.latest[1].ty, AttrType::Float);
    assert_eq!(a.outputs[4].ty, AttrType::Float, "max keeps the input type");
    assert!(p.streams[0].route_key.is_empty());
}

#[test]
fn durations_errors() {
    let e =
        errors(&format!("{STOCK}define aggregation A from stockStream select count() as n aggregate every week;"), "");
    assert!(e.contains("line 2, column 75") && e.contains("`week` is not an aggregation duration"), "{e}");
    let e = errors(
        &format!("{STOCK}define aggregation A from stockStream select count() as n aggregate every year ... sec;"),
        "",
    );
    assert!(e.contains("runs backwards"), "{e}");
    let e = errors(
        &format!("{STOCK}define aggregation A from stockStream select count() as n aggregate every sec, min, sec;"),
        "",
    );
    assert!(e.contains("listed twice"), "{e}");
}

#[test]
fn select_and_reference_errors_all_reported() {
    let e = errors(
        &format!(
            "{STOCK}define aggregation A from tradeStream select count() as n aggregate every sec;\n\
             define aggregation B from stockStream select sum(symbol) as s, median(price) as m, avg(price * 2) as a, \
             price * 2, count(price) as c, sum(price) + 1 as x group by nope aggregate by price every sec;"
        ),
        "",
    );
    for needle in [
        "reads `tradeStream`, which is not a defined stream (defined: stockStream)",
        "`sum(symbol)` needs a numeric attribute",
        "unknown function `median`",
        "takes one attribute of the input stream, not an expression",
        "give this select item a name with `as`",
        "`count()` takes no argument",
        "must be a whole select item",
        "group by `nope`",
        "the time stamp must be a long (epoch ms) or a string",
    ] {
        assert!(e.contains(needle), "missing {needle:?} in\n{e}");
    }
}

#[test]
fn time_attribute_kinds() {
    let p = plan(
        "define stream S (ts string, v int); define aggregation A from S select sum(v) as t aggregate by ts every sec;",
    );
    assert_eq!(p.aggregations[0].time, TimeSource::Text(0));
    let p =
        plan("define stream S (ts string, v int); define aggregation A from S select sum(v) as t aggregate every sec;");
    assert_eq!(p.aggregations[0].time, TimeSource::Arrival);
}

#[test]
fn partitioning_rules() {
    let app = |ann: &str| {
        format!("{STOCK}{ann}\ndefine aggregation A from stockStream select count() as n aggregate every sec...year;")
    };
    // Annotation without a shard id anywhere: error.
    let e = errors(&app("@PartitionById(enable='true')"), "siddhi: {properties: {}}");
    assert!(e.contains("partitioned by shard id") && e.contains("siddhi.properties.shardId"), "{e}");
    // enable='false' wins over the global property.
    let p = check(&app("@PartitionById(enable='false')"), "a", &cfg("siddhi: {properties: {partitionById: true}}"))
        .unwrap();
    assert!(!p.aggregations[0].partitioned);
    // The global property alone partitions, with the node id as shard id.
    let p = check(&app(""), "a", &cfg("wso2.carbon: {id: n9}\nsiddhi: {properties: {partitionById: true}}")).unwrap();
    assert_eq!(p.aggregations[0].shard_id.as_deref(), Some("n9"));
    // shardId wins over the node id; annotation names are case-insensitive.
    let p =
        check(&app("@partitionbyid"), "a", &cfg("wso2.carbon: {id: n9}\nsiddhi: {properties: {shardId: s1}}")).unwrap();
    assert_eq!(p.aggregations[0].shard_id.as_deref(), Some("s1"));
}

#[test]
fn store_and_purge_annotations() {
    let yaml = "wso2.datasources:\n  dataSources:\n    - name: TEST_DB\n      definition:\n        configuration:\n          jdbcUrl: 'jdbc:postgresql://h:5432/db'\n          username: u\n          password: p\n";
    let app = |ann: &str| {
        format!("{STOCK}{ann}\ndefine aggregation A from stockStream select count() as n aggregate every sec...day;")
    };
    let p = check(&app("@store(type='rdbms', datasource='TEST_DB')"), "a", &cfg(yaml)).unwrap();
    let s = p.aggregations[0].store.as_ref().unwrap();
    assert_eq!((s.url.as_str(), s.username.as_deref()), ("jdbc:postgresql://h:5432/db", Some("u")));
    let e = errors(&app("@store(type='rdbms', datasource='NOPE')"), yaml);
    assert!(e.contains("no such entry"), "{e}");
    let e = errors(&app("@store(type='mongodb', mongodb.uri='x')"), "");
    assert!(e.contains("type='rdbms'"), "{e}");

    let p = plan(&app(
        "@purge(enable='true', interval='10 min', @retentionPeriod(sec='120 sec', min='all', day='40 days'))",
    ));
    let purge = &p.aggregations[0].purge;
    assert_eq!(purge.interval_ms, 600_000);
    assert_eq!(
        purge.retention,
        vec![
            (Granularity::Seconds, Some(120_000)),
            (Granularity::Minutes, None),
            (Granularity::Hours, Some(30 * 86_400_000)),
            (Granularity::Days, Some(40 * 86_400_000)),
        ]
    );
    let e = errors(&app("@purge(@retentionPeriod(sec='10 sec', year='5 years'))"), "");
    assert!(e.contains("below the minimum for seconds, 120 sec") && e.contains("has no years duration"), "{e}");
    let p = plan(&app("@purge(enable='false')"));
    assert!(!p.aggregations[0].purge.enabled);
}

#[test]
fn unsupported_things_are_rejected_with_reasons() {
    let e = errors(
        &format!(
            "{STOCK}@PrimaryKey('symbol')\ndefine aggregation A from stockStream select count() as n aggregate every sec;"
        ),
        "",
    );
    assert!(e.contains("@PrimaryKey is not allowed"), "{e}");
    let e = errors(&format!("{STOCK}from stockStream#window.length(5) select symbol insert into Out;"), "");
    assert!(e.contains("not supported") && e.contains("own node"), "{e}");
    let e = errors("define stream S (a int);", "");
    assert!(e.contains("defines no aggregation"), "{e}");
}

#[test]
fn warnings_for_ignored_things() {
    let p = plan(
        "@source(type='kafka', @map(type='json'))\ndefine stream S (a int);\ndefine stream Unused (b int);\n\
         @IgnoreEventsOlderThanBuffer\ndefine aggregation A from S select sum(a) as t aggregate every sec;",
    );
    let text: Vec<String> = p.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(p.warnings.len(), 3, "{text:?}");
    assert!(text.iter().any(|w| w.contains("@source")));
    assert!(text.iter().any(|w| w.contains("Unused")));
    assert!(text.iter().any(|w| w.contains("IgnoreEventsOlderThanBuffer")));
}

#[test]
fn http_sources_and_their_json_mapping_are_read() {
    let p = plan(
        "@App:Name('Shop')\n\
         @source(type='http', receiver.url='http://0.0.0.0:8006/sales', basic.auth.enabled='true', worker.count='4',\n\
                 @map(type='json', fail.on.missing.attribute='false'))\n\
         define stream Sales (item string, qty long);\n\
         @source(type = 'HTTP', @map(type = 'json'))\n\
         define stream Returns (item string, qty long);\n\
         define aggregation A from Sales select item, sum(qty) as t group by item aggregate every sec;\n\
         define aggregation B from Returns select item, sum(qty) as t group by item aggregate every sec;",
    );
    assert_eq!((p.name.as_str(), p.named), ("Shop", true));
    assert_eq!(p.sources.len(), 2);
    let sales = &p.sources[0];
    assert_eq!(sales.url, Some(ReceiverUrl { host: "0.0.0.0".into(), port: 8006, path: "/sales".into() }));
    assert!(sales.basic_auth && !sales.mapping.fail_on_missing_attribute);
    assert!(!p.streams[0].mapping.fail_on_missing_attribute);
    let returns = &p.sources[1];
    assert_eq!((returns.stream, returns.url.clone(), returns.basic_auth), (1, None, false));
    assert!(p.streams[1].mapping.fail_on_missing_attribute, "SI's default");
    let text: Vec<String> = p.warnings.iter().map(|w| w.to_string()).collect();
    assert!(text.iter().any(|w| w.contains("`worker.count`")), "{text:?}");
    let e = errors(
        "@source(type='http', receiver.url='https://h:1/p', @map(type='xml'))\ndefine stream S (a int);\n\
         define aggregation A from S select sum(a) as t aggregate every sec;",
        "",
    );
    assert!(e.contains("TLS") && e.contains("@map(type='xml') is not supported"), "{e}");
}

#[test]
fn filter_on_input() {
    let p = plan(
        "define stream S (a int, b string); define aggregation A from S[a > 1 and b != 'x'] select sum(a) as t aggregate every sec;",
    );
    assert!(p.aggregations[0].filter.is_some());
    let e = errors(
        "define stream S (a int); define aggregation A from S[a + 1] select sum(a) as t aggregate every sec;",
        "",
    );
    assert!(e.contains("true/false"), "{e}");
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    /// Fragments of the language, shuffled into nonsense that is close to real apps.
    fn fragments() -> impl Strategy<Value = String> {
        let words = prop::sample::select(vec![
            "define",
            "stream",
            "aggregation",
            "S",
            "A",
            "from",
            "select",
            "group",
            "by",
            "aggregate",
            "every",
            "sec",
            "...",
            "year",
            "week",
            ",",
            ";",
            "(",
            ")",
            "[",
            "]",
            "@",
            "PartitionById",
            "store",
            "purge",
            "retentionPeriod",
            "=",
            "'x'",
            "\"2017-06-** **:**:**\"",
            "sum",
            "avg",
            "count",
            "distinctCount",
            "a",
            "ts",
            "int",
            "long",
            "string",
            "float",
            "as",
            "*",
            "+",
            "-",
            "/",
            "%",
            "==",
            ">",
            "and",
            "not",
            "is",
            "null",
            "1",
            "1.5",
            "9223372036854775807",
            "99999999999999999999",
            "L",
            "#",
            "window",
            "--",
            "/*",
            "`",
            "é",
            "\u{0}",
            "within",
            "per",
            "on",
            "order",
            "limit",
            "offset",
            "having",
            "h",
        ]);
        prop::collection::vec(words, 0..60).prop_map(|w| w.join(" "))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn checking_any_app_text_returns(text in fragments()) {
            let _ = check(&text, "fuzz", &cfg("wso2.carbon: {id: n}"));
        }

        #[test]
        fn compiling_any_query_returns(text in fragments(), raw in ".{0,80}") {
            let app = plan(&format!("{STOCK}define aggregation A from stockStream select symbol, sum(price) as p group by symbol aggregate by timestamp every sec...year;"));
            let _ = crate::query::compile_query(&app, &text);
            let _ = crate::query::compile_query(&app, &raw);
            let _ = check(&raw, "fuzz", &cfg(""));
        }
    }
}
