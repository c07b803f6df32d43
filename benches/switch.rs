//! criterion benchmarks: the codec, the engine applying batches of sales, the group commit,
//! sales end to end, and what metrics and logs add to each reply.
//!
//! `cargo bench --bench switch` (same release profile as the switch itself).

use bytes::BytesMut;
use cardswitch::engine::{CardRange, Command, Context, Effects, Engine, IdSource};
use cardswitch::partition::MAX_CACHED_RECORDS;
use cardswitch::server::{Config, Server};
use cardswitch::store::records::encode_batch;
use cardswitch::store::{CommitLog, Store};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use protocol::Verification;
use protocol::{encode_frame, CardNo, Frame, Header, LocalTime, Message, PaymentMethod, Request};
use tokio_util::codec::Decoder;

const FIRST: u64 = 6200880000000000;
const CARDS: u64 = 100_000;

fn header(stan: u32) -> Header {
    Header { flags: 0, terminal_id: 1001, stan, local_time: LocalTime(20261122093005) }
}

fn sale(stan: u32) -> Frame {
    let card = CardNo(FIRST + u64::from(stan) % CARDS);
    Frame {
        header: header(stan),
        message: Message::Request(Request::Sale {
            card,
            amount_minor: 1_250,
            category: 1,
            flags: 0,
            verification: Verification::NONE,
        }),
    }
}

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    let frames: Vec<Frame> = (0..1_000).map(sale).collect();
    group.throughput(Throughput::Elements(frames.len() as u64));
    group.bench_function("encode_1000_sales", |b| {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        b.iter(|| {
            buf.clear();
            frames.iter().for_each(|f| encode_frame(f, &mut buf));
        })
    });
    let mut wire = BytesMut::new();
    frames.iter().for_each(|f| encode_frame(f, &mut wire));
    let key = protocol::TerminalKey::from_bytes([7; 32]);
    group.bench_function("sign_1000_sales", |b| {
        b.iter(|| {
            let mut out = BytesMut::with_capacity(64 * 1_000);
            frames.iter().for_each(|f| protocol::encode_signed(f, Some(&key), &mut out));
            out
        })
    });
    let mut signed = BytesMut::new();
    frames.iter().for_each(|f| protocol::encode_signed(f, Some(&key), &mut signed));
    group.bench_function("decode_and_verify_1000_sales", |b| {
        b.iter(|| {
            let mut buf = signed.clone();
            let mut n = 0;
            while let Some(inbound) = protocol::InboundCodec.decode(&mut buf).unwrap() {
                assert!(inbound.verify(&key));
                n += 1;
            }
            assert_eq!(n, 1_000);
        })
    });
    group.bench_function("decode_1000_sales", |b| {
        b.iter(|| {
            let mut buf = wire.clone();
            let mut n = 0;
            while let Some(_) = protocol::FrameCodec::default().decode(&mut buf).unwrap() {
                n += 1;
            }
            assert_eq!(n, 1_000);
        })
    });
    group.finish();
}

fn engine_with_cards() -> Engine {
    let mut engine = Engine::new(IdSource::new(0, 1, 0));
    engine.add_range(CardRange {
        first: CardNo(FIRST),
        last: CardNo(FIRST + CARDS - 1),
        product: 1,
        store_id: 21,
        terminal_id: 1,
        stan: 1,
    });
    let ctx = Context { now_ms: 0, business_date: 20261122, batch_id: 1, catalog_version: 0 };
    let mut fx = Effects::default();
    for n in 0..CARDS {
        let request =
            Request::SellCard { card: CardNo(FIRST + n), amount_minor: 100_000_000, method: PaymentMethod::Cash as u8 };
        engine.apply(ctx, &Command::new(header(n as u32), 21, request), &mut fx);
        fx.clear();
    }
    engine
}

fn engine_apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine_apply");
    let mut engine = engine_with_cards();
    engine.reserve_cache(MAX_CACHED_RECORDS + 8_192);
    let ctx = Context { now_ms: 0, business_date: 20261122, batch_id: 1, catalog_version: 0 };
    let mut stan = 1_000_000u32;
    for batch in [1usize, 64, 1_024, 4_096] {
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &batch| {
            let mut fx = Effects::default();
            b.iter(|| {
                for _ in 0..batch {
                    stan = stan.wrapping_add(1);
                    let Message::Request(request) = sale(stan).message else { unreachable!() };
                    engine.apply(ctx, &Command::new(header(stan), 21, request), &mut fx);
                }
                fx.clear();
                // As a partition does after each group commit (everything counts as on disk
                // here), so the caches stay at their working size.
                engine.evict(i64::MIN, MAX_CACHED_RECORDS, u64::MAX, 2 * batch);
            })
        });
    }
    group.finish();
}

/// The effects of `batch` sales, as a partition would commit them.
fn sales_effects(engine: &mut Engine, stan: &mut u32, batch: usize) -> Effects {
    let ctx = Context { now_ms: 0, business_date: 20261122, batch_id: 1, catalog_version: 0 };
    let mut fx = Effects::default();
    for _ in 0..batch {
        *stan = stan.wrapping_add(1);
        let Message::Request(request) = sale(*stan).message else { unreachable!() };
        engine.apply(ctx, &Command::new(header(*stan), 21, request), &mut fx);
    }
    fx
}

fn group_commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("group_commit");
    group.sample_size(20);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut engine = engine_with_cards();
    let mut stan = 2_000_000u32;
    for batch in [1usize, 16, 256, 4_096] {
        group.throughput(Throughput::Elements(batch as u64));
        let fx = sales_effects(&mut engine, &mut stan, batch);
        // Encoding the effects and one synced write, as a partition does per batch.
        let mut batch_id = 0;
        group.bench_with_input(BenchmarkId::from_parameter(batch), &fx, |b, fx| {
            b.iter(|| {
                let mut encoded = Vec::with_capacity(320 * batch);
                encode_batch(fx, &mut encoded);
                batch_id += 1;
                store.commit(batch_id, &encoded).unwrap()
            })
        });
    }
    group.finish();
}

/// A client on loopback sends 1,000 sales with 64 outstanding and waits for every reply:
/// decode, partition queue, engine, group commit (synced), reply, encode.
fn end_to_end(c: &mut Criterion) {
    let mut group = c.benchmark_group("end_to_end");
    group.sample_size(10);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = Config::new(dir.path().to_path_buf(), "127.0.0.1:0".parse().unwrap());
    let admin = config.keys.admin.clone();
    let server = runtime.block_on(Server::start(config)).unwrap();
    let mut client = runtime.block_on(async {
        let mut client =
            protocol::client::Client::connect_with_key(server.local_addr, admin.terminal_id, admin.key).await.unwrap();
        client.sign_on(1, 21).await.unwrap();
        let import = Request::ImportRange { first: CardNo(FIRST), last: CardNo(FIRST + 999), product: 1, store_id: 21 };
        client.call(2, import).await.unwrap();
        for n in 0..1_000u32 {
            let request =
                Request::SellCard { card: CardNo(FIRST + u64::from(n)), amount_minor: 100_000_000, method: 1 };
            client.send(10 + n, 0, request).await.unwrap();
        }
        for _ in 0..1_000 {
            client.next_response().await.unwrap();
        }
        client
    });
    const WINDOW: u32 = 64;
    const SALES: u32 = 1_000;
    let mut stan = 10_000u32;
    group.throughput(Throughput::Elements(u64::from(SALES)));
    group.bench_function("1000_sales_window_64", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let mut outstanding = 0;
                let mut sent = 0;
                while sent < SALES || outstanding > 0 {
                    while sent < SALES && outstanding < WINDOW {
                        stan += 1;
                        let card = CardNo(FIRST + u64::from(stan) % 1_000);
                        client
                            .send(
                                stan,
                                0,
                                Request::Sale {
                                    card,
                                    amount_minor: 100,
                                    category: 1,
                                    flags: 0,
                                    verification: Verification::NONE,
                                },
                            )
                            .await
                            .unwrap();
                        sent += 1;
                        outstanding += 1;
                    }
                    client.next_response().await.unwrap();
                    outstanding -= 1;
                }
            })
        })
    });
    group.finish();
    drop(client);
    runtime.block_on(server.shutdown());
}

/// What every reply costs the metrics and the logs: its response counted, its latency
/// observed, and the per-reply `debug!` and `trace!` of the server at the service's `info`
/// level (a subscriber installed, those levels off). Compare with `end_to_end`'s time a sale.
fn observability(c: &mut Criterion) {
    use cardswitch::metrics::Metrics;
    use protocol::{MsgType, ResponseCode};
    let subscriber = tracing_subscriber::fmt().with_max_level(tracing::Level::INFO).with_writer(std::io::sink).finish();
    let _ = tracing::subscriber::set_global_default(subscriber);
    let metrics = Metrics::default();
    let mut group = c.benchmark_group("observability");
    group.throughput(Throughput::Elements(1_000));
    group.bench_function("1000_replies_counted_and_timed", |b| {
        b.iter(|| {
            for n in 0..1_000u64 {
                metrics.count_response(MsgType::SaleReply, ResponseCode::Approved);
                metrics.request_latency_us.observe(std::hint::black_box(800 + n));
            }
        })
    });
    group.bench_function("1000_replies_debug_and_trace_off", |b| {
        b.iter(|| {
            for stan in 0..1_000u32 {
                let code = std::hint::black_box(ResponseCode::Approved);
                tracing::debug!(terminal_id = 1001, stan, msg_type = %MsgType::SaleReply, code = %code, "answered");
                tracing::trace!(terminal_id = 1001, stan, response = ?code, "reply");
            }
        })
    });
    group.finish();
}

criterion_group!(benches, codec, engine_apply, group_commit, end_to_end, observability);
criterion_main!(benches);
