//! An SI deployment moved to Tally unchanged: an app with `@App:name` and two
//! `@source(type='http')` streams on their own `receiver.url` paths (basic auth on one),
//! and a `deployment.yaml` with SI's `auth.configs` and `siddhi.stores.query.api`. Events
//! are posted the way SI's http source takes them; totals are read through SI's store API.

mod common;

use common::{Dir, is_mysql, s, stores, unique};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A free loopback port (bound and released; the node binds it a moment later).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One HTTP/1.1 request to a loopback port: (status, head, body).
fn request(port: u16, method: &str, path: &str, headers: &str, body: &str) -> (u16, String, String) {
    common::http_request(&format!("127.0.0.1:{port}"), method, path, headers, body)
}

struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status().ok();
        self.0.wait().ok();
    }
}

#[test]
fn an_si_deployment_works_unchanged() {
    let d = Dir::new();
    for store in stores(&d) {
        let agg = unique("Sales");
        let (sales_port, api_port) = (free_port(), free_port());
        let app = d.write(
            "ShopApp.siddhi",
            &format!(
                "@App:name('ShopApp')
@App:description('sales and returns, aggregated')

@source(type='http', receiver.url='http://127.0.0.1:{sales_port}/sales', basic.auth.enabled='true',
        @map(type='json'))
define stream SalesStream (item string, qty long, ts long);

@source(type='http', receiver.url='http://127.0.0.1:{sales_port}/returns',
        @map(type='json', fail.on.missing.attribute='false'))
define stream ReturnsStream (item string, qty long, ts long);

@PartitionById @purge(enable='false')
define aggregation {agg}
from SalesStream
select item, sum(qty) as sold
group by item
aggregate by ts every sec ... day;

@PartitionById @purge(enable='false')
define aggregation {agg}Returns
from ReturnsStream
select item, sum(qty) as returned
group by item
aggregate by ts every sec ... day;
"
            ),
        );
        let node = d.write(
            "deployment.yaml",
            &format!(
                "wso2.carbon:
  id: {id}
siddhi:
  properties:
    partitionById: true
    shardId: {id}
auth.configs:
  type: 'local'
  userManager:
    adminRole: admin
    userStore:
      users:
       -
         user:
           username: admin
           password: YWRtaW4=
           roles: 1
      roles:
       -
         role:
           id: 1
           displayName: admin
siddhi.stores.query.api:
  transportProperties:
    -
      name: \"server.bootstrap.socket.timeout\"
      value: 60
  listenerConfigurations:
    -
      id: \"default\"
      host: \"127.0.0.1\"
      port: {api_port}
    -
      id: \"msf4j-https\"
      host: \"0.0.0.0\"
      port: 7443
      scheme: https
tally:
  max_body_bytes: 4096
",
                id = unique("si")
            ),
        );
        let mut child = Command::new(env!("CARGO_BIN_EXE_tally"))
            .args(["serve", "--app", s(&app), "--config", s(&node), "--store", &store])
            .args(["--ingest", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut lines = Vec::new();
        for _ in 0..3 {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            lines.push(line);
        }
        let _node = Node(child);
        assert!(lines[0].starts_with("listening ingest="), "{lines:?}");
        assert!(lines.iter().any(|l| l.contains(&format!(":{api_port} for store query API"))), "{lines:?}");
        assert!(
            lines
                .iter()
                .any(|l| l.contains("source SalesStream /sales") && l.contains("source ReturnsStream /returns")),
            "{lines:?}"
        );

        let admin = "Authorization: Basic YWRtaW46YWRtaW4=\r\n"; // admin:admin
        let sale =
            |item: &str, qty: i64| format!("{{\"event\": {{\"item\": \"{item}\", \"qty\": {qty}, \"ts\": 1000}}}}");
        // Basic auth guards /sales: none, or a wrong password, is 401 with a challenge.
        let (st, head, _) = request(sales_port, "POST", "/sales", "", &sale("tea", 1));
        assert_eq!(st, 401);
        assert!(head.contains("www-authenticate: basic"), "{head}");
        let (st, _, _) =
            request(sales_port, "POST", "/sales", "Authorization: Basic YWRtaW46bm8=\r\n", &sale("tea", 1));
        assert_eq!(st, 401);
        // SI-format events, one per request and an array; the query string is ignored.
        let (st, _, body) = request(sales_port, "POST", "/sales?src=till-1", admin, &sale("tea", 3));
        assert_eq!((st, body.as_str()), (200, "{\"accepted\":1}"), "{store}");
        let two = format!("[{}, {}]", sale("tea", 4), sale("cake", 5));
        let (st, _, body) = request(sales_port, "POST", "/sales", admin, &two);
        assert_eq!((st, body.as_str()), (200, "{\"accepted\":2}"), "{store}");
        // fail.on.missing.attribute (SI's default): a missing attribute is refused, naming it.
        let (st, _, body) =
            request(sales_port, "POST", "/sales", admin, "{\"event\": {\"item\": \"tea\", \"ts\": 1000}}");
        assert_eq!(st, 400, "{body}");
        assert!(body.contains("event 0: attribute `qty` is missing"), "{body}");
        // A string where a number belongs, and an unknown key: 400 naming the event.
        let bad = format!("[{}, {{\"event\": {{\"item\": \"tea\", \"qty\": \"7\", \"ts\": 1000}}}}]", sale("tea", 1));
        let (st, _, body) = request(sales_port, "POST", "/sales", admin, &bad);
        assert_eq!(st, 400);
        assert!(body.contains("event 1: attribute `qty` is long and cannot take \\\"7\\\""), "{body}");
        let (st, _, body) = request(sales_port, "POST", "/sales", admin, "{\"event\": {\"itm\": \"tea\"}}");
        assert_eq!(st, 400);
        assert!(body.contains("no attribute `itm`"), "{body}");
        // With fail.on.missing.attribute='false' a missing attribute is null; no auth there.
        let (st, _, body) =
            request(sales_port, "POST", "/returns", "", "{\"event\": {\"item\": \"tea\", \"qty\": 2, \"ts\": 1000}}");
        assert_eq!((st, body.as_str()), (200, "{\"accepted\":1}"));
        // A null group-by value is a group of its own, except in MySQL, whose key columns
        // cannot hold null: refused there when it arrives, saying why.
        let (st, _, body) = request(sales_port, "POST", "/returns", "", "{\"event\": {\"qty\": 1, \"ts\": 1000}}");
        if is_mysql(&store) {
            assert_eq!(st, 400, "{body}");
            assert!(body.contains("the group-by attribute `item` is null, and aggregation"), "{body}");
        } else {
            assert_eq!(st, 200, "{body}");
        }
        // A path no source has, a method other than POST, a body over the limit.
        let (st, _, body) = request(sales_port, "POST", "/sale", admin, &sale("tea", 1));
        assert_eq!(st, 404);
        assert!(body.contains("POST /sales takes events of stream `SalesStream`"), "{body}");
        let (st, head, _) = request(sales_port, "GET", "/sales", admin, "");
        assert_eq!(st, 405);
        assert!(head.contains("allow: post"), "{head}");
        let big = format!("[{}]", vec![sale("tea", 1); 200].join(","));
        let (st, _, body) = request(sales_port, "POST", "/sales", admin, &big);
        assert_eq!(st, 413);
        assert!(body.contains("4096 bytes (tally.max_body_bytes)"), "{body}");

        // SI's store query API, where siddhi.stores.query.api says.
        let q = |app: &str, query: &str| format!("{{\"appName\": \"{app}\", \"query\": \"{query}\"}}");
        let (st, _, body) = request(
            api_port,
            "POST",
            "/stores/query",
            "",
            &q("ShopApp", &format!("from {agg} within 0L, 100000000L per 'days' select item, sold order by item")),
        );
        assert_eq!((st, body.as_str()), (200, "{\"records\":[[\"cake\",5],[\"tea\",7]]}"), "{store}");
        let (st, _, body) = request(
            api_port,
            "POST",
            "/stores/query",
            "",
            &q(
                "ShopApp",
                &format!("from {agg}Returns within 0L, 100000000L per 'sec' select item, returned order by item"),
            ),
        );
        let want =
            if is_mysql(&store) { "{\"records\":[[\"tea\",2]]}" } else { "{\"records\":[[\"tea\",2],[null,1]]}" };
        assert_eq!((st, body.as_str()), (200, want), "{store}");
        let (st, _, body) =
            request(api_port, "POST", "/stores/query", "", &q("Other", "from X within 0L, 1L per 'sec'"));
        assert_eq!(st, 404);
        assert!(body.contains("Cannot find an active SiddhiApp with name: Other"), "{body}");
        let (st, _, _) = request(api_port, "POST", "/stores/query", "", &q("", "from X"));
        assert_eq!(st, 400);
        let (st, _, _) = request(api_port, "POST", "/stores/query", "", &q("ShopApp", " "));
        assert_eq!(st, 400);
        let (st, _, body) =
            request(api_port, "POST", "/stores/query", "", &q("ShopApp", "from Nope within 0L, 1L per 'sec'"));
        assert_eq!(st, 400);
        assert!(body.contains("unknown aggregation `Nope`"), "{body}");
        let (st, head, _) = request(api_port, "GET", "/stores/query", "", "");
        assert_eq!(st, 405);
        assert!(head.contains("allow: post"), "{head}");
    }
}
