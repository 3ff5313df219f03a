//! Lifecycle benchmarks: the pure rules, and a whole tick over fleets of
//! different sizes on the embedded SQLite store (so one run gives the scaling
//! ratio between sizes).

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};

use benches::fleet::{seed_fleet, Fleet};
use engine::model::WeekdaySet;
use engine::rules::schedule::{next_allowed_autostart, CronSchedule};
use engine::runtime::ShutdownSignal;
use engine::time::Timestamp;

fn rules(c: &mut Criterion) {
    let hourly = CronSchedule::parse_weekly("CRON_TZ=America/Chicago 0 * * * 1-5").expect("schedule");
    let weekdays: WeekdaySet = WeekdaySet::from_bits(0b001_1111);
    let at = Timestamp::parse_rfc3339("2026-01-09T18:00:00Z").expect("instant");
    c.bench_function("rules/next_allowed_autostart_hourly_weekdays", |b| {
        b.iter(|| next_allowed_autostart(&hourly, std::hint::black_box(at), weekdays))
    });
    let daily = CronSchedule::parse_weekly("CRON_TZ=Europe/Berlin 30 8 * * *").expect("schedule");
    let none_allowed = WeekdaySet::EMPTY;
    c.bench_function("rules/next_allowed_autostart_no_allowed_day", |b| {
        b.iter(|| next_allowed_autostart(&daily, std::hint::black_box(at), none_allowed))
    });
}

fn tick(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
    let mut group = c.benchmark_group("lifecycle_tick");
    group.sample_size(10);
    for size in [100u32, 1_000] {
        group.bench_with_input(BenchmarkId::new("sqlite_fleet", size), &size, |b, &size| {
            b.iter_batched(
                || runtime.block_on(seed_fleet(size)),
                |fleet: Fleet| {
                    runtime.block_on(async {
                        let stats = fleet.executor.tick(fleet.tick_at, &ShutdownSignal::never()).await;
                        assert_eq!(stats.transitions + stats.reminders, size);
                    })
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, rules, tick);
criterion_main!(benches);
