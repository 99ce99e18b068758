//! `switchyard dead`: an operator's dead letters from the command line. Dead rows of each
//! service's table (`list`, `show`, `requeue`, `purge`) and, on Kafka, the messages of each
//! service's dead-letter topic (`list --dlq`, `replay --dlq`).
//!
//! Parses arguments, asks for confirmation and prints (text or `--json`); the work is the
//! library's (`Switchyard::dead_rows` and its neighbours in `engine/dead.rs`). Safe beside a
//! running host: only `dead` rows are read, locked and written, and the DLQ is read without
//! joining a consumer group. It never runs DDL: a missing table is an error saying to migrate.

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use switchyard::Switchyard;
use switchyard::config::Config;
use switchyard::engine::{Operator, ReplaySelection};
use switchyard::store::dead::{DeadChange, DeadFilter, DeadPage, DeadSelection, WholeRow};
use switchyard::store::{Timestamp, now};
use switchyard::text::{cut, escape_controls};
use switchyard::transport::kafka::dlq::DlqMessage;

/// `switchyard dead ...`.
#[derive(Args)]
pub struct DeadArgs {
    #[command(subcommand)]
    command: DeadCommand,
}

#[derive(Subcommand)]
enum DeadCommand {
    /// Dead rows: id, service, type, key, attempts, last error, age (every service unless
    /// --service). With --dlq: the messages of Kafka's dead-letter topics instead.
    List {
        #[arg(long, short)]
        config: PathBuf,
        /// Only this service's table (or DLQ).
        #[arg(long)]
        service: Option<String>,
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many rows per service; 0 shows all.
        #[arg(long, default_value_t = 100)]
        limit: u64,
        /// Read each service's `<topic>.dlq` from the beginning (no consumer group, nothing
        /// committed): partition, offset, reason, origin, size and a preview of the bytes.
        #[arg(long, conflicts_with_all = ["event_type", "since", "reason"])]
        dlq: bool,
        /// Print one JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One row whole, payload included, whatever its status.
    Show {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        service: String,
        #[arg(long)]
        id: i64,
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Dead rows back to `pending`: attempts reset, last error cleared, due now; recorded
    /// with who, when and why. A running host's relay picks them up at its next poll.
    Requeue {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        service: String,
        #[command(flatten)]
        pick: PickArgs,
        #[command(flatten)]
        who: WhoArgs,
    },
    /// Delete dead rows (never a row in another status): prints how many would go, then needs
    /// --yes, or a typed confirmation when stdin is a terminal.
    Purge {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        service: String,
        #[command(flatten)]
        pick: PickArgs,
        #[command(flatten)]
        who: WhoArgs,
        /// Delete without asking.
        #[arg(long)]
        yes: bool,
    },
    /// Send messages of a service's Kafka dead-letter topic back to its topic, bytes and key
    /// unchanged. One still undecodable goes back to the DLQ with its reason: nothing is lost.
    Replay {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        service: String,
        /// Replay from the Kafka dead-letter topic `<topic>.dlq` (the one source replay has).
        #[arg(long, required = true)]
        dlq: bool,
        /// The message at this offset (`PARTITION:OFFSET`, or `OFFSET` when only one partition
        /// has it), as `dead list --dlq` shows; repeatable.
        #[arg(
            long = "offset",
            value_name = "[PARTITION:]OFFSET",
            value_parser = parse_position,
            required_unless_present = "all",
            conflicts_with = "all"
        )]
        offsets: Vec<(Option<i32>, i64)>,
        /// Every message of the DLQ.
        #[arg(long)]
        all: bool,
    },
}

/// Which dead rows (for `list`; `requeue` and `purge` through [`PickArgs`]).
#[derive(Args)]
struct FilterArgs {
    /// Only rows of this event type.
    #[arg(long = "type", value_name = "TYPE")]
    event_type: Option<String>,
    /// Only rows that went dead within this long (`30m`, `2h`, `7d`, `1h30m`) or since this
    /// RFC 3339 time (`2026-12-01T08:00:00Z`).
    #[arg(long, value_name = "DURATION|TIME", value_parser = parse_since)]
    since: Option<Timestamp>,
    /// Only rows whose last error contains this text (case-sensitive).
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
}

impl FilterArgs {
    fn filter(&self) -> DeadFilter {
        DeadFilter {
            event_type: self.event_type.clone(),
            since: self.since,
            until: None,
            reason: self.reason.clone(),
        }
    }
}

/// The rows a requeue or purge acts on: ids, every dead row, or filters.
#[derive(Args)]
struct PickArgs {
    /// These rows (repeatable, or comma separated). Every one must be dead, or nothing
    /// changes and the error says what state each other one is in.
    #[arg(
        long = "id",
        value_name = "N",
        value_delimiter = ',',
        conflicts_with_all = ["all", "event_type", "since", "reason"]
    )]
    ids: Vec<i64>,
    /// Every dead row of the service.
    #[arg(long, conflicts_with_all = ["event_type", "since", "reason"])]
    all: bool,
    #[command(flatten)]
    filter: FilterArgs,
}

impl PickArgs {
    fn selection(&self) -> anyhow::Result<DeadSelection> {
        let filter = self.filter.filter();
        if !self.ids.is_empty() {
            Ok(DeadSelection::Ids(self.ids.clone()))
        } else if self.all {
            Ok(DeadSelection::Matching(DeadFilter::default()))
        } else if !filter.is_empty() {
            Ok(DeadSelection::Matching(filter))
        } else {
            anyhow::bail!(
                "say which dead rows: --id N (repeatable), --all, or a filter (--type, --since, \
                 --reason)"
            )
        }
    }
}

/// Who acts and why, recorded with every row requeued or purged.
#[derive(Args)]
struct WhoArgs {
    /// Who acts (recorded); default: $USER, else the login name of the user running it.
    #[arg(long, value_name = "NAME")]
    by: Option<String>,
    /// Why (recorded), e.g. "fixed the webhook URL, PROJ-123".
    #[arg(long, value_name = "TEXT", default_value = "")]
    note: String,
}

impl WhoArgs {
    fn operator(&self) -> anyhow::Result<Operator> {
        let actor = self
            .by
            .clone()
            .or_else(|| std::env::var("USER").ok().filter(|a| !a.trim().is_empty()))
            .or_else(|| {
                std::env::var("LOGNAME")
                    .ok()
                    .filter(|a| !a.trim().is_empty())
            })
            .or_else(login_name)
            .filter(|a| !a.trim().is_empty())
            .context("say who acts with --by NAME ($USER is not set)")?;
        Ok(Operator {
            actor,
            note: self.note.clone(),
        })
    }
}

/// The login name of this process's user from `/etc/passwd`, where `$USER` is not set (a
/// container's root shell, cron).
fn login_name() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").ok()?.uid();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        (fields.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_owned())
    })
}

/// `--since`: a duration back from now (humantime's units: `30m`, `2h`, `7d`, `1h 30m`) or an
/// RFC 3339 time.
fn parse_since(text: &str) -> Result<Timestamp, String> {
    if let Ok(d) = humantime::parse_duration(text) {
        return Ok(switchyard::store::earlier(now(), d));
    }
    if let Ok(t) = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
    {
        let t = t.to_offset(time::UtcOffset::UTC);
        return Ok(Timestamp::new(t.date(), t.time()));
    }
    Err(format!(
        "{text:?} is neither a duration (30m, 2h, 7d, 1h30m) nor an RFC 3339 time \
         (2026-12-01T08:00:00Z)"
    ))
}

/// `--offset`: `PARTITION:OFFSET` or `OFFSET`.
fn parse_position(text: &str) -> Result<(Option<i32>, i64), String> {
    let bad = || format!("{text:?} is not an offset: write OFFSET or PARTITION:OFFSET, e.g. 0:42");
    match text.split_once(':') {
        Some((p, o)) => Ok((
            Some(p.trim().parse().map_err(|_| bad())?),
            o.trim().parse().map_err(|_| bad())?,
        )),
        None => Ok((None, text.trim().parse().map_err(|_| bad())?)),
    }
}

/// Runs one `switchyard dead` command.
///
/// # Errors
/// Bad input (unknown service, a row that is not dead, no confirmation), a missing table
/// (saying to run `switchyard migrate`), or a database or broker error. Nothing is changed
/// when it fails.
pub async fn run(args: DeadArgs) -> anyhow::Result<()> {
    let config = match &args.command {
        DeadCommand::List { config, .. }
        | DeadCommand::Show { config, .. }
        | DeadCommand::Requeue { config, .. }
        | DeadCommand::Purge { config, .. }
        | DeadCommand::Replay { config, .. } => config.clone(),
    };
    let loaded =
        Config::load(&config).with_context(|| format!("loading config {}", config.display()))?;
    // Never DDL here: `migrate` is the one command that changes the schema.
    let host = Switchyard::open(loaded).await?;
    run_on(&host, args.command)
        .await
        .map_err(|e| unmigrated(e, &config))
}

async fn run_on(host: &Switchyard, command: DeadCommand) -> anyhow::Result<()> {
    match command {
        DeadCommand::List {
            service,
            dlq: true,
            json,
            ..
        } => list_dlq(host, service.as_deref(), json).await,
        DeadCommand::List {
            service,
            filter,
            limit,
            json,
            ..
        } => {
            let limit = (limit > 0).then_some(limit);
            let pages = host
                .dead_rows(service.as_deref(), &filter.filter(), limit)
                .await?;
            print_list(&pages, json);
            Ok(())
        }
        DeadCommand::Show {
            service, id, json, ..
        } => {
            let s = host.configured_service(&service)?;
            let Some(row) = host.whole_row(&service, id).await? else {
                anyhow::bail!("{} has no row {id} (service {service})", s.table);
            };
            print_row(&service, &s.table, &row, json);
            Ok(())
        }
        DeadCommand::Requeue {
            service, pick, who, ..
        } => requeue(host, &service, &pick, &who).await,
        DeadCommand::Purge {
            service,
            pick,
            who,
            yes,
            ..
        } => purge(host, &service, &pick, &who, yes).await,
        DeadCommand::Replay {
            service,
            offsets,
            all,
            ..
        } => {
            let selection = if all {
                ReplaySelection::All
            } else {
                ReplaySelection::Offsets(offsets)
            };
            let report = host.dlq_replay(&service, &selection).await?;
            let positions: Vec<String> = report
                .replayed
                .iter()
                .map(|(p, o)| format!("{p}:{o}"))
                .collect();
            println!(
                "{service}: replayed {} messages from {} to {}{}",
                report.replayed.len(),
                report.dlq,
                report.topic,
                if positions.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", shorten(&positions))
                }
            );
            println!(
                "(a message still undecodable goes back to {} with its reason; one naming a \
                 row already consumed or dead is acknowledged without running)",
                report.dlq
            );
            Ok(())
        }
    }
}

async fn requeue(
    host: &Switchyard,
    service: &str,
    pick: &PickArgs,
    who: &WhoArgs,
) -> anyhow::Result<()> {
    let selection = pick.selection()?;
    let operator = who.operator()?;
    let s = host.configured_service(service)?;
    match host.requeue_dead(service, &selection, &operator).await? {
        DeadChange::NotDead(rows) => Err(not_dead(&s.table, service, &rows, "requeued")),
        DeadChange::Done(rows) if rows.is_empty() => {
            println!(
                "{service}: no dead row matched in {}; nothing requeued",
                s.table
            );
            Ok(())
        }
        DeadChange::Done(rows) => {
            let ids: Vec<String> = rows.iter().map(|r| r.id.to_string()).collect();
            println!(
                "{service}: {} dead rows back to pending in {}, due now (ids {}); recorded as \
                 requeued by {}",
                rows.len(),
                s.table,
                shorten(&ids),
                operator.actor
            );
            let catalog = host.catalog();
            let mut unrouted: Vec<&str> = rows
                .iter()
                .map(|r| r.biz_type.as_str())
                .filter(|t| catalog.route(t).is_err())
                .collect();
            unrouted.sort_unstable();
            unrouted.dedup();
            for t in unrouted {
                eprintln!(
                    "warning: no route names event type {t:?}: its requeued rows stay pending \
                     until a [[routes]] entry does"
                );
            }
            Ok(())
        }
    }
}

async fn purge(
    host: &Switchyard,
    service: &str,
    pick: &PickArgs,
    who: &WhoArgs,
    yes: bool,
) -> anyhow::Result<()> {
    let mut selection = pick.selection()?;
    let operator = who.operator()?;
    let s = host.configured_service(service)?;
    // Count first: the rows named must all be dead; a filter deletes only the rows that were
    // dead when counted (not one that dies while the operator reads the question).
    let count = match &mut selection {
        DeadSelection::Ids(ids) => {
            let mut refused = Vec::new();
            for id in ids.iter() {
                match host.whole_row(service, *id).await? {
                    Some(r) if r.status == "dead" => {}
                    Some(r) => refused.push((*id, Some(r.status))),
                    None => refused.push((*id, None)),
                }
            }
            if !refused.is_empty() {
                return Err(not_dead(&s.table, service, &refused, "deleted"));
            }
            ids.sort_unstable();
            ids.dedup();
            ids.len() as u64
        }
        DeadSelection::Matching(filter) => {
            filter.until = Some(now());
            let pages = host.dead_rows(Some(service), filter, Some(0)).await?;
            pages.iter().map(|(_, p)| p.total).sum()
        }
    };
    if count == 0 {
        println!(
            "{service}: no dead row matched in {}; nothing to purge",
            s.table
        );
        return Ok(());
    }
    println!(
        "{service}: {count} dead rows would be deleted from {} (payloads included; this cannot \
         be undone)",
        s.table
    );
    if !yes {
        if !std::io::stdin().is_terminal() {
            anyhow::bail!(
                "nothing deleted: pass --yes to confirm (stdin is not a terminal to ask on)"
            );
        }
        eprint!("delete them? type yes to confirm: ");
        let mut answer = String::new();
        std::io::stdin()
            .read_line(&mut answer)
            .context("reading the confirmation")?;
        if answer.trim() != "yes" {
            anyhow::bail!("nothing deleted: not confirmed");
        }
    }
    match host.purge_dead(service, &selection, &operator).await? {
        DeadChange::NotDead(rows) => Err(not_dead(&s.table, service, &rows, "deleted")),
        DeadChange::Done(rows) => {
            let gone = rows.len() as u64;
            println!(
                "{service}: deleted {gone} dead rows from {}; recorded as purged by {}",
                s.table, operator.actor
            );
            if gone < count {
                println!(
                    "({} fewer than counted: requeued or purged by someone else meanwhile)",
                    count - gone
                );
            }
            Ok(())
        }
    }
}

/// The error for rows named by id that are not dead: each one's state.
fn not_dead(
    table: &str,
    service: &str,
    rows: &[(i64, Option<String>)],
    verb: &str,
) -> anyhow::Error {
    let states: Vec<String> = rows
        .iter()
        .map(|(id, status)| match status {
            Some(s) => format!("row {id} is {s}"),
            None => format!("there is no row {id} in {table}"),
        })
        .collect();
    anyhow::anyhow!(
        "nothing {verb}: {}; only dead rows can be {verb} (`switchyard dead list --service \
         {service}` lists them)",
        states.join(", ")
    )
}

/// A long list of ids or positions, cut after 20.
fn shorten(items: &[String]) -> String {
    if items.len() <= 20 {
        items.join(", ")
    } else {
        format!("{}, ... {} more", items[..20].join(", "), items.len() - 20)
    }
}

fn rfc3339(t: Timestamp) -> String {
    t.assume_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

fn age_secs(t: Option<Timestamp>) -> Option<f64> {
    t.map(|t| (now() - t).as_seconds_f64().max(0.0))
}

/// `45s`, `12m`, `3h12m`, `2d4h`.
fn age_text(secs: Option<f64>) -> String {
    let Some(secs) = secs else {
        return "-".into();
    };
    let s = secs as u64;
    let (d, h, m) = (s / 86_400, s % 86_400 / 3_600, s % 3_600 / 60);
    if d > 0 {
        format!("{d}d{h}h")
    } else if h > 0 {
        format!("{h}h{m}m")
    } else if m > 0 {
        format!("{m}m")
    } else {
        format!("{s}s")
    }
}

fn print_list(pages: &[(std::sync::Arc<switchyard::catalog::Service>, DeadPage)], json: bool) {
    if json {
        let rows: Vec<serde_json::Value> = pages
            .iter()
            .flat_map(|(s, page)| {
                page.rows.iter().map(move |r| {
                    json!({
                        "service": s.name,
                        "id": r.id,
                        "event_type": r.biz_type,
                        "key": r.message_key,
                        "attempts": r.attempts,
                        "max_attempts": r.max_attempts,
                        "last_error": r.last_error,
                        "dead_at": r.dead_at.map(rfc3339),
                        "age_seconds": age_secs(r.dead_at),
                    })
                })
            })
            .collect();
        let totals: serde_json::Map<String, serde_json::Value> = pages
            .iter()
            .map(|(s, p)| (s.name.clone(), json!(p.total)))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"rows": rows, "totals": totals}))
                .unwrap_or_default()
        );
        return;
    }
    println!(
        "{:<16} {:>8}  {:<32} {:<16} {:>8} {:>7}  last error",
        "service", "id", "type", "key", "attempts", "age"
    );
    for (s, page) in pages {
        for r in &page.rows {
            let error = r.last_error.as_deref().unwrap_or("-");
            println!(
                "{:<16} {:>8}  {:<32} {:<16} {:>8} {:>7}  {}",
                s.name,
                r.id,
                r.biz_type,
                escape_controls(cut(&r.message_key, 16)),
                format!("{}/{}", r.attempts, r.max_attempts),
                age_text(age_secs(r.dead_at)),
                escape_controls(cut(error, 100))
            );
        }
    }
    let shown: usize = pages.iter().map(|(_, p)| p.rows.len()).sum();
    let total: u64 = pages.iter().map(|(_, p)| p.total).sum();
    let per: Vec<String> = pages
        .iter()
        .map(|(s, p)| format!("{} {}", s.name, p.total))
        .collect();
    println!("\n{total} dead rows ({})", per.join(", "));
    if (shown as u64) < total {
        println!("showing {shown}: --limit 0 shows all, `dead show` one row whole");
    }
}

fn print_row(service: &str, table: &str, r: &WholeRow, json: bool) {
    let time = |t: Option<Timestamp>| t.map(rfc3339);
    if json {
        let doc = json!({
            "service": service,
            "table": table,
            "id": r.id,
            "status": r.status,
            "event_type": r.biz_type,
            "service_name": r.service_name,
            "topic": r.topic,
            "key": r.message_key,
            "attempts": r.retry_count,
            "max_attempts": r.max_retry,
            "last_error": r.last_error,
            "next_retry_at": time(r.next_retry_at),
            "published_at": time(r.published_at),
            "consumed_at": time(r.consumed_at),
            "created_at": time(r.created_at),
            "updated_at": time(r.updated_at),
            "handler_version": r.handler_version,
            "publish_count": r.publish_count,
            "chain_depth": r.chain_depth,
            "payload": r.payload,
        });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return;
    }
    let dash = |t: Option<Timestamp>| time(t).unwrap_or_else(|| "-".into());
    println!("service          {service} (table {table})");
    println!("id               {}", r.id);
    println!("status           {}", r.status);
    println!("type             {}", r.biz_type);
    println!("service_name     {}", r.service_name);
    println!("topic            {}", r.topic);
    println!("key              {}", escape_controls(&r.message_key));
    println!("attempts         {}/{}", r.retry_count, r.max_retry);
    println!(
        "last error       {}",
        escape_controls(r.last_error.as_deref().unwrap_or("-"))
    );
    println!("created_at       {}", dash(r.created_at));
    println!("updated_at       {}", dash(r.updated_at));
    println!("next_retry_at    {}", dash(r.next_retry_at));
    println!("published_at     {}", dash(r.published_at));
    println!("consumed_at      {}", dash(r.consumed_at));
    println!(
        "handler_version  {}",
        r.handler_version.as_deref().unwrap_or("-")
    );
    println!("publish_count    {}", r.publish_count);
    println!("chain_depth      {}", r.chain_depth);
    let payload = r.payload.as_deref().unwrap_or("(unreadable)");
    let pretty = serde_json::from_str::<serde_json::Value>(payload)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok());
    println!(
        "payload:\n{}",
        pretty.unwrap_or_else(|| escape_controls(payload).into_owned())
    );
}

/// The first bytes of a message, printable ASCII as is and every other byte as `\xNN`.
fn preview(bytes: &[u8]) -> String {
    const SHOWN: usize = 48;
    let mut out = String::new();
    for b in bytes.iter().take(SHOWN) {
        if b.is_ascii_graphic() || *b == b' ' {
            out.push(*b as char);
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    if bytes.len() > SHOWN {
        out.push_str("...");
    }
    out
}

async fn list_dlq(host: &Switchyard, service: Option<&str>, json: bool) -> anyhow::Result<()> {
    let read = host.dlq_messages(service).await?;
    if service.is_some()
        && let Some((s, Err(e))) = read.first()
    {
        anyhow::bail!("reading the DLQ of service {}: {e}", s.name);
    }
    if json {
        let mut messages = Vec::new();
        let mut errors = serde_json::Map::new();
        for (s, r) in &read {
            match r {
                Ok(list) => messages.extend(list.iter().map(|m| dlq_json(&s.name, &s.topic, m))),
                Err(e) => {
                    errors.insert(s.name.clone(), json!(e.to_string()));
                }
            }
        }
        let doc = json!({"messages": messages, "errors": errors});
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return Ok(());
    }
    println!(
        "{:<16} {:>9} {:>8} {:>7}  {:<40} {:<32} preview",
        "service", "partition", "offset", "size", "reason", "origin"
    );
    let mut total = 0;
    for (s, r) in &read {
        match r {
            Ok(list) => {
                total += list.len();
                for m in list {
                    println!(
                        "{:<16} {:>9} {:>8} {:>7}  {:<40} {:<32} {}",
                        s.name,
                        m.partition,
                        m.offset,
                        m.value.len(),
                        escape_controls(cut(m.reason.as_deref().unwrap_or("-"), 40)),
                        escape_controls(m.origin.as_deref().unwrap_or("-")),
                        preview(&m.value)
                    );
                }
            }
            Err(e) => println!("{:<16} (DLQ not readable: {e})", s.name),
        }
    }
    println!(
        "\n{total} dead-lettered messages; `switchyard dead replay --dlq --service S --offset \
         PARTITION:OFFSET` sends one back"
    );
    Ok(())
}

fn dlq_json(service: &str, topic: &str, m: &DlqMessage) -> serde_json::Value {
    json!({
        "service": service,
        "topic": switchyard::transport::kafka::dlq_topic(topic),
        "partition": m.partition,
        "offset": m.offset,
        "key": m.key,
        "size": m.value.len(),
        "reason": m.reason,
        "origin": m.origin,
        "timestamp_ms": m.timestamp_ms,
        "preview": preview(&m.value),
        "utf8": std::str::from_utf8(&m.value).ok(),
    })
}

/// A database error saying a table is missing, explained: `migrate` creates the tables (this
/// version adds `switchyard_dead_letter_actions`), and `dead` never does.
fn unmigrated(e: anyhow::Error, config: &Path) -> anyhow::Error {
    // Only the database's own word counts, never text of ours that happens to match.
    let missing = e
        .chain()
        .filter_map(|c| c.downcast_ref::<switchyard::store::StoreError>())
        .any(|db| {
            let text = db.to_string();
            ["doesn't exist", "does not exist", "no such table"]
                .iter()
                .any(|m| text.contains(m))
        });
    if missing {
        e.context(format!(
            "a table is missing: run `switchyard migrate -c {}` first (it creates the outbox \
             tables and {}; only migrate changes the schema)",
            config.display(),
            switchyard::store::dead::DEAD_LETTER_ACTIONS
        ))
    } else {
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_durations_and_rfc3339_times() {
        let before = now();
        let t = parse_since("2h").unwrap();
        let back = (before - t).as_seconds_f64();
        assert!((7_199.0..7_300.0).contains(&back), "{back}");
        assert!(parse_since("7d").is_ok() && parse_since("30m").is_ok());
        assert!(parse_since("1h 30m").is_ok());
        let t = parse_since("2026-12-01T08:00:00+02:00").unwrap();
        assert_eq!(rfc3339(t), "2026-12-01T06:00:00Z");
        let e = parse_since("yesterday").unwrap_err();
        assert!(e.contains("neither a duration"), "{e}");
    }

    #[test]
    fn the_actor_defaults_to_the_login_name_without_user() {
        assert!(login_name().is_some_and(|n| !n.is_empty()));
    }

    #[test]
    fn offsets_are_plain_or_per_partition() {
        assert_eq!(parse_position("42"), Ok((None, 42)));
        assert_eq!(parse_position("2:42"), Ok((Some(2), 42)));
        assert!(parse_position("x:1").is_err() && parse_position("").is_err());
    }

    #[test]
    fn previews_escape_what_is_not_printable() {
        assert_eq!(preview(b"\x00ok \xff"), "\\x00ok \\xff");
        assert!(preview(&[b'a'; 100]).ends_with("..."));
        assert_eq!(age_text(Some(59.0)), "59s");
        assert_eq!(age_text(Some(3_700.0)), "1h1m");
        assert_eq!(age_text(Some(2.0 * 86_400.0 + 3_600.0)), "2d1h");
    }
}
