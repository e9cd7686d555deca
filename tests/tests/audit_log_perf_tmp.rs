use e2e::envoy::{Envoy, EnvoyOptions};
use e2e::servers::{Collector, EchoUpstream};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread")]
async fn perf() {
    let upstream = EchoUpstream::start().await.unwrap();
    let collector = Collector::start().await.unwrap();
    let envoy = Envoy::start(
        EnvoyOptions::new("audit-log.yaml").concurrency(1)
            .upstream(upstream.port())
            .collector(collector.port())
            .plugin_config("audit_log", r#"{"sinks": {"http": [{"cluster": "collector", "path": "/events"}]}, "headers": [{"name":"x-tenant-id"}], "query_params": ["page"]}"#),
    ).await.unwrap();
    let c = reqwest::Client::new();
    let n = 3000i64;
    for i in 0..n {
        let r = c.get(envoy.url(&format!("/api/v1/items/{i}?page=2&token=abc"))).header("authorization", "Bearer abc.def.ghi").header("x-tenant-id", "acme").header("user-agent", "perf/1.0").send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let s = envoy.stats().await.unwrap();
    println!("req avg ns {}", s.custom("audit_log.t_req_ns") / n);
    println!("log avg ns {}", s.custom("audit_log.t_log_ns") / n);
    for k in ["t_fs"] { println!("{k} avg ns {}", s.custom(&format!("audit_log.{k}")) / n); }
    // Throughput: 1 worker, flood events as fast as possible with 8 concurrent clients.
    let t = Instant::now();
    let before = s.custom("audit_log.sent");
    let mut hs = vec![];
    for _ in 0..8 { let c = c.clone(); let url = envoy.url("/t"); hs.push(tokio::spawn(async move { for _ in 0..1500 { c.get(&url).send().await.unwrap(); } })); }
    for h in hs { h.await.unwrap(); }
    let dt = t.elapsed();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let s = envoy.stats().await.unwrap();
    println!("12000 reqs in {:?}: {:.0} rps; sent {} dropped {}", dt, 12000.0/dt.as_secs_f64(), s.custom("audit_log.sent")-before, s.custom("audit_log.dropped"));
}
