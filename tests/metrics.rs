//! `/metrics` and `/health` over HTTP while terminals are served: the families an operations
//! team watches, with the values the traffic made.

use cardswitch::server::Server;
use protocol::{CardNo, Request, ResponseCode as C};

mod support;
use support::desk::Desk;
use support::{config, connect};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health_show_what_the_switch_did() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir.path().join("data"));
    config.metrics = Some("127.0.0.1:0".parse().unwrap());
    let server = Server::start(config).await.unwrap();
    let metrics = server.metrics_addr.unwrap();
    let mut desk = Desk::open(connect(server.local_addr, 11, 21).await, 11, 21).await;
    let first = CardNo(6200880000000000);
    let import = Request::ImportRange { first, last: CardNo(first.0 + 9), product: 1, store_id: 21 };
    assert_eq!(desk.call(|_, _, _| import).await.code(), C::Approved);
    let sell = Request::SellCard { card: first, amount_minor: 10_000, method: 1 };
    assert_eq!(desk.card(|_, _, _| sell).await.code, C::Approved);
    for _ in 0..25 {
        assert_eq!(desk.card(|_, _, _| support::sale(first, 100)).await.code, C::Approved);
    }
    assert_eq!(desk.card(|_, _, _| support::sale(first, 1_000_000)).await.code, C::InsufficientValue);

    let (status, text) = tokio::task::spawn_blocking(move || support::http_get(metrics, "/metrics")).await.unwrap();
    assert_eq!(status, 200);
    for line in [
        "cardswitch_responses_total{type=\"sale_reply\",code=\"approved\"} 25",
        "cardswitch_responses_total{type=\"sale_reply\",code=\"insufficient_value\"} 1",
        "cardswitch_responses_total{type=\"sell_card_reply\",code=\"approved\"} 1",
        "cardswitch_request_latency_seconds_count 27",
        "cardswitch_connections 1",
        "cardswitch_partition_queue_depth{partition=\"1\"} 0",
        "cardswitch_mac_failures_total 0",
        "cardswitch_storage_failures_total 0",
        "cardswitch_partitions_failed 0",
        "cardswitch_ready 1",
    ] {
        assert!(text.lines().any(|l| l == line), "no line {line:?} in:\n{text}");
    }
    assert!(text.contains("cardswitch_group_commit_seconds_bucket{le=\"+Inf\"}"), "{text}");
    assert!(text.contains("# TYPE cardswitch_group_commit_commands histogram"), "{text}");
    let (status, body) = tokio::task::spawn_blocking(move || support::http_get(metrics, "/health")).await.unwrap();
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    let (status, _) = tokio::task::spawn_blocking(move || support::http_get(metrics, "/nothing")).await.unwrap();
    assert_eq!(status, 404);
    drop(desk);
    server.shutdown().await;
}
