//! criterion benchmarks: the codec, and the engine applying batches of sales.
//!
//! `cargo bench --bench switch` (same release profile as the switch itself).

use bytes::BytesMut;
use cardswitch::engine::{CardRange, Command, Context, Effects, Engine, TxnIds};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
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
        message: Message::Request(Request::Sale { card, amount_minor: 1_250, category: 1, flags: 0 }),
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
    group.bench_function("decode_1000_sales", |b| {
        b.iter(|| {
            let mut buf = wire.clone();
            let mut n = 0;
            while let Some(_) = protocol::FrameCodec.decode(&mut buf).unwrap() {
                n += 1;
            }
            assert_eq!(n, 1_000);
        })
    });
    group.finish();
}

fn engine_with_cards() -> Engine {
    let mut engine = Engine::new(TxnIds::new(0, 1, 0));
    engine.add_range(CardRange {
        first: CardNo(FIRST),
        last: CardNo(FIRST + CARDS - 1),
        product: 1,
        store_id: 21,
        terminal_id: 1,
        stan: 1,
    });
    let ctx = Context { now_ms: 0, business_date: 20261122 };
    let mut fx = Effects::default();
    for n in 0..CARDS {
        let request =
            Request::SellCard { card: CardNo(FIRST + n), amount_minor: 100_000_000, method: PaymentMethod::Cash as u8 };
        engine.apply(ctx, &Command { header: header(n as u32), store_id: 21, request }, &mut fx);
        fx.clear();
    }
    engine
}

fn engine_apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine_apply");
    let mut engine = engine_with_cards();
    let ctx = Context { now_ms: 0, business_date: 20261122 };
    let mut stan = 1_000_000u32;
    for batch in [1usize, 64, 1_024, 4_096] {
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &batch| {
            let mut fx = Effects::default();
            b.iter(|| {
                for _ in 0..batch {
                    stan = stan.wrapping_add(1);
                    let Message::Request(request) = sale(stan).message else { unreachable!() };
                    engine.apply(ctx, &Command { header: header(stan), store_id: 21, request }, &mut fx);
                }
                fx.clear();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, codec, engine_apply);
criterion_main!(benches);
