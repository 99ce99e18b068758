//! Throughput through Kafka, end to end: enqueue committed -> relayed -> topic -> consumed
//! committed, with the `probe` test component writing one state row per event.
//!
//! ```sh
//! scripts/kafka.sh start && scripts/build-components.sh
//! cargo run --release -p switchyard --example kafka_throughput            # 10000 events
//! EVENTS=50000 DATABASE_URL=mysql://root@127.0.0.1:3306/test \
//!   cargo run --release -p switchyard --example kafka_throughput
//! TRANSPORT=embedded cargo run --release -p switchyard --example kafka_throughput
//! ```
//! Prints events/s; a benchmark, never a test assertion. The database defaults to a fresh
//! SQLite file; `KAFKA_BROKERS` (default 127.0.0.1:9092) picks the broker.

use anyhow::Context;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use switchyard::config::Config;
use switchyard::store::now;
use switchyard::{NewEvent, Switchyard};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let events: usize = std::env::var("EVENTS").map_or(Ok(10_000), |v| v.parse())?;
    let transport = std::env::var("TRANSPORT").unwrap_or_else(|_| "kafka".into());
    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let dir = tempfile::tempdir()?;
    let db = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}", dir.path().join("bench.db").display()));
    let probe = Path::new(env!("CARGO_MANIFEST_DIR")).join("../build/components/probe.wasm");
    anyhow::ensure!(
        probe.is_file(),
        "{} is missing: run scripts/build-components.sh",
        probe.display()
    );
    // A fresh prefix: topics and groups of earlier runs stay on the broker.
    let prefix = format!(
        "bench{}",
        SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis()
    );
    let transport_toml = match transport.as_str() {
        "kafka" => format!(
            "[transport]\nkind = \"kafka\"\nbrokers = \"{brokers}\"\nsession_timeout_ms = 6000\n"
        ),
        "embedded" => String::new(),
        other => anyhow::bail!("TRANSPORT={other}: use kafka or embedded"),
    };
    let text = format!(
        "database_url = \"{db}\"\n{transport_toml}\n[naming]\nprefix = \"{prefix}\"\n\
         [services.{prefix}probe]\n[[routes]]\nevent_type = \"probe.run\"\n\
         service = \"{prefix}probe\"\ncomponent = \"{}\"\n",
        probe.display()
    );
    let config = Config::parse(&text, Path::new("bench.toml"), dir.path().to_owned())?;
    let host = Switchyard::open(config).await?;
    host.migrate().await?;
    let running = host
        .start(host.configured_transport().await?)
        .await
        .context("starting the host")?;
    let service = format!("{prefix}probe");

    // Warm up: the first event waits for the consumer group to form.
    let t = Instant::now();
    host.publish(NewEvent::new("probe.run", json!({"incr": ["warmup"]})))
        .await?;
    wait_consumed(&host, &service, 1).await?;
    eprintln!("first event consumed after {:?} (group join)", t.elapsed());

    let outbox = host.outbox();
    let started = Instant::now();
    for chunk in (0..events).collect::<Vec<_>>().chunks(500) {
        let rows = chunk
            .iter()
            .map(|i| {
                outbox.row(
                    NewEvent::new("probe.run", json!({"incr": [format!("n/{i}")]}))
                        .key(format!("k{}", i % 64)),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        host.store().insert(&rows, now()).await?;
        outbox.wake(&service);
    }
    let enqueued = started.elapsed();
    wait_consumed(&host, &service, events as i64 + 1).await?;
    let total = started.elapsed();
    println!(
        "{events} events through {transport} ({db_kind}): enqueued in {enqueued:.2?}, all consumed \
         after {total:.2?}: {:.0} events/s end to end",
        events as f64 / total.as_secs_f64(),
        db_kind = db.split(':').next().unwrap_or("?"),
    );
    running.shutdown(Duration::from_secs(10)).await;
    Ok(())
}

async fn wait_consumed(host: &Switchyard, service: &str, want: i64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let status = host.status().await?;
        let counts = &status
            .iter()
            .find(|(s, _)| s.name == service)
            .context("service missing from status")?
            .1
            .counts;
        let done =
            counts.get("consumed").copied().unwrap_or(0) + counts.get("dead").copied().unwrap_or(0);
        if done >= want {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {done} of {want} events done after 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
