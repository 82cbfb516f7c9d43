//! The ceilings under the database contract: W1S, W2S and W3S do the row work of W1, W2
//! and W3 inside PostgreSQL procedures (`ceilings.sql`), with no client in the loop. A
//! client-driven workload cannot beat its ceiling on the same server; the gap between the
//! two is what the client, the protocol and the round trips cost.
//!
//! Each of those is timed from the client around one `CALL` (one round trip in seconds of
//! work), and checks afterwards that the work was done: the rows, events and outcomes are
//! counted and returned as figures with the value they must have.
//!
//! W4S is W4's floor, a latency rather than a rate: the single round trips a pickup cannot
//! do without, paced as W4 paces its defers, so each runs on a connection idle since the
//! last one, as a listening worker's is.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use postpone::connect::ConnectConfig;
use postpone::store::postgres::queries;

use tokio_postgres::types::ToSql;

use crate::workloads::{app, fill, latency_figures, paced, rate};
use crate::{Figure, procfs, sql};

/// The dollar quote of `ceilings.sql`: the library's statements must not contain it.
const QUOTE: &str = "$postpone_bench$";

/// Which of the contract's triggers on `procrastinate_jobs` stay enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Triggers {
    /// All of them (the contract).
    All,
    /// All but the `job_inserted` NOTIFY trigger: events are written, nobody is woken.
    NoNotify,
    /// None of the user triggers (`ALTER TABLE ... DISABLE TRIGGER USER`, which the
    /// database's owner may do): no event row, no NOTIFY. The foreign keys stay.
    None,
    /// All of them, and the batches go through `postpone_defer_jobs_v1`, which writes the
    /// events and notifications set-wise (the triggers skip them): W2's own path.
    SetWise,
    /// None of the user triggers, and the procedure writes what the contract promises per
    /// job itself, set-wise: the rows, their events and their NOTIFYs. The least work a
    /// defer can do under the contract.
    Floor,
}

impl Triggers {
    /// The suffix of the figures' names.
    pub(crate) fn suffix(self) -> &'static str {
        match self {
            Triggers::All => "",
            Triggers::NoNotify => "_no_notify",
            Triggers::None => "_no_triggers",
            Triggers::SetWise => "_set_wise",
            Triggers::Floor => "_floor",
        }
    }

    /// How the bench's progress lines say it.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Triggers::All => "",
            Triggers::NoNotify => ", job_inserted NOTIFY trigger disabled",
            Triggers::None => ", user triggers disabled",
            Triggers::SetWise => ", events written set-wise (postpone_defer_jobs_v1)",
            Triggers::Floor => ", no trigger: rows, events and NOTIFYs written set-wise",
        }
    }

    fn disable(self) -> Option<&'static str> {
        match self {
            Triggers::All | Triggers::SetWise => None,
            Triggers::NoNotify => Some(sql::DISABLE_NOTIFY_TRIGGER),
            Triggers::None | Triggers::Floor => Some(sql::DISABLE_USER_TRIGGERS),
        }
    }
}

/// `ceilings.sql` with the library's fetch and finish statements in place.
fn ceilings_sql() -> anyhow::Result<String> {
    for (name, statement) in [
        ("fetch_jobs", queries::FETCH_JOBS),
        ("finish_jobs", queries::finish_jobs(false, false)),
    ] {
        if statement.contains(QUOTE) {
            bail!("the library's {name} statement contains {QUOTE}: change the bench's quote");
        }
    }
    Ok(sql::CEILINGS
        .replace("{{FETCH_JOBS}}", queries::FETCH_JOBS.trim_end())
        .replace(
            "{{FINISH_JOBS}}",
            queries::finish_jobs(false, false).trim_end(),
        ))
}

/// A connection and its backend's CPU clock (when the server runs on this machine).
struct Session {
    client: tokio_postgres::Client,
    backend: Option<u32>,
}

impl Session {
    /// Opens a session, creates the procedures and sets the triggers.
    async fn install(connect: &ConnectConfig, triggers: Triggers) -> anyhow::Result<Self> {
        let session = Self::open(connect).await?;
        session
            .client
            .batch_execute(&ceilings_sql()?)
            .await
            .context("cannot create the bench's ceiling procedures")?;
        if let Some(disable) = triggers.disable() {
            session
                .client
                .batch_execute(disable)
                .await
                .context("cannot disable the triggers of procrastinate_jobs")?;
        }
        Ok(session)
    }

    async fn open(connect: &ConnectConfig) -> anyhow::Result<Self> {
        let client = connect.connect().await?;
        let pid: i32 = client.query_one(sql::BACKEND_PID, &[]).await?.try_get(0)?;
        let backend = u32::try_from(pid).ok().filter(|p| procfs::is_postgres(*p));
        Ok(Self { client, backend })
    }

    fn backend_cpu(&self) -> Option<Duration> {
        self.backend.and_then(procfs::cpu_time)
    }

    /// Runs one `CALL` of a procedure (which commits inside); returns its wall time and
    /// its backend's CPU time.
    async fn call(
        &self,
        call: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> anyhow::Result<(Duration, Option<Duration>)> {
        let cpu_before = self.backend_cpu();
        let started = Instant::now();
        self.client
            .execute(call, params)
            .await
            .with_context(|| format!("{} failed", call.lines().last().unwrap_or(call)))?;
        let elapsed = started.elapsed();
        let cpu = match (cpu_before, self.backend_cpu()) {
            (Some(before), Some(after)) => Some(after.saturating_sub(before)),
            _ => None,
        };
        Ok((elapsed, cpu))
    }

    async fn count(&self, query: &str) -> anyhow::Result<i64> {
        Ok(self.client.query_one(query, &[]).await?.try_get(0)?)
    }
}

/// The rate, the server CPU per job (when readable) and a count that must equal `jobs`.
fn figures(
    name: &str,
    jobs: usize,
    elapsed: Duration,
    cpu: Option<Duration>,
    counted: (&str, i64),
) -> anyhow::Result<Vec<Figure>> {
    let (what, count) = counted;
    if count != jobs as i64 {
        bail!("{name}: {count} {what}, expected {jobs}");
    }
    let mut figures = vec![Figure::new(name, rate(jobs, elapsed), "jobs/s")];
    if let Some(cpu) = cpu {
        figures.push(Figure::new(
            format!("{name}_server_cpu_per_job"),
            cpu.as_secs_f64() * 1e6 / jobs as f64,
            "us/job",
        ));
    }
    figures.push(Figure {
        expected: Some(jobs as f64),
        ..Figure::new(format!("{name}_{what}"), count as f64, "jobs")
    });
    Ok(figures)
}

/// W1S: `jobs` calls of `procrastinate_defer_jobs_v1`, each committed on its own.
pub(crate) async fn w1s(connect: &ConnectConfig, jobs: usize) -> anyhow::Result<Vec<Figure>> {
    let session = Session::install(connect, Triggers::All).await?;
    let (elapsed, cpu) = session.call(sql::CALL_W1S, &[&int(jobs)?]).await?;
    let name = "W1S_defer_single";
    let inserted = session.count(sql::COUNT_TODO).await?;
    let mut figures = figures(name, jobs, elapsed, cpu, ("jobs_inserted", inserted))?;
    figures.push(deferred_events(&session, name, jobs).await?);
    Ok(figures)
}

/// The contract's own check of a defer: every job has its `deferred` event.
async fn deferred_events(session: &Session, name: &str, jobs: usize) -> anyhow::Result<Figure> {
    let events = session.count(sql::COUNT_DEFERRED_EVENTS).await?;
    if events != jobs as i64 {
        bail!("{name}: {events} deferred events, expected {jobs}");
    }
    Ok(Figure {
        expected: Some(jobs as f64),
        ..Figure::new(format!("{name}_deferred_events"), events as f64, "events")
    })
}

/// W2S: `procrastinate_defer_jobs_v1` (or, set-wise, `postpone_defer_jobs_v1`) in batches,
/// committed per batch, with `triggers`.
pub(crate) async fn w2s(
    connect: &ConnectConfig,
    jobs: usize,
    batch: usize,
    triggers: Triggers,
) -> anyhow::Result<Vec<Figure>> {
    let session = Session::install(connect, triggers).await?;
    let path = match triggers {
        Triggers::SetWise => "set_wise",
        Triggers::Floor => "floor",
        Triggers::All | Triggers::NoNotify | Triggers::None => "contract",
    };
    let (elapsed, cpu) = session
        .call(sql::CALL_W2S, &[&int(jobs)?, &int(batch)?, &path])
        .await?;
    let name = format!("W2S_defer_batch{}", triggers.suffix());
    let inserted = session.count(sql::COUNT_TODO).await?;
    let mut figures = figures(&name, jobs, elapsed, cpu, ("jobs_inserted", inserted))?;
    if triggers != Triggers::None {
        figures.push(deferred_events(&session, &name, jobs).await?);
    }
    Ok(figures)
}

/// One server-side drain: claims of `batch`, in `sessions` concurrent sessions (each a
/// worker of its own), committing synchronously unless `asynchronous`, with `triggers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Drain {
    pub(crate) batch: usize,
    pub(crate) sessions: usize,
    pub(crate) asynchronous: bool,
    pub(crate) triggers: Triggers,
}

impl Drain {
    /// `W3S_drain_b<batch>[_x<sessions>][_async][_no_triggers]`.
    pub(crate) fn name(&self) -> String {
        let mut name = format!("W3S_drain_b{}", self.batch);
        if self.sessions > 1 {
            name.push_str(&format!("_x{}", self.sessions));
        }
        if self.asynchronous {
            name.push_str("_async");
        }
        name.push_str(self.triggers.suffix());
        name
    }

    pub(crate) fn label(&self) -> String {
        format!(
            "W3S server-side drain, claims of {}, {} session(s){}{}",
            self.batch,
            self.sessions,
            if self.asynchronous {
                ", synchronous_commit off"
            } else {
                ""
            },
            self.triggers.label()
        )
    }
}

/// W3S: a backlog of `jobs` (deferred as W3's, untimed; analysed with `--analyze`, as
/// W3's) drained as `drain` says, each claim and each batch finish its own transaction. With
/// `POSTPONE_WORKER_ASYNCHRONOUS_COMMIT` set, every drain commits as such a worker does.
pub(crate) async fn w3s(
    connect: &ConnectConfig,
    jobs: usize,
    drain: Drain,
    analyze: bool,
) -> anyhow::Result<Vec<Figure>> {
    let app = app(connect, None)?;
    fill(&app, jobs).await?;
    drop(app);
    let first = Session::install(connect, drain.triggers).await?;
    if analyze {
        first.client.batch_execute(sql::ANALYZE_JOBS).await?;
    }
    let mut sessions = vec![first];
    for _ in 1..drain.sessions {
        sessions.push(Session::open(connect).await?);
    }
    let batch = int(drain.batch)?;
    let mut workers = Vec::new();
    for session in &sessions {
        if drain.asynchronous || workers_commit_asynchronously() {
            session
                .client
                .batch_execute(sql::SYNCHRONOUS_COMMIT_OFF)
                .await?;
        }
        let worker: i64 = session
            .client
            .query_one(queries::REGISTER_WORKER, &[])
            .await?
            .try_get(0)?;
        workers.push(worker);
    }
    let cpu_before: Option<Vec<Duration>> = sessions.iter().map(Session::backend_cpu).collect();
    let started = Instant::now();
    let mut running = tokio::task::JoinSet::new();
    for (session, worker) in sessions.into_iter().zip(workers) {
        running.spawn(async move {
            session
                .client
                .execute(sql::CALL_W3S, &[&worker, &batch])
                .await
                .with_context(|| format!("the W3S drain of worker {worker} failed"))?;
            anyhow::Ok(session)
        });
    }
    let mut sessions = Vec::new();
    while let Some(done) = running.join_next().await {
        sessions.push(done??);
    }
    let elapsed = started.elapsed();
    let cpu_after: Option<Vec<Duration>> = sessions.iter().map(Session::backend_cpu).collect();
    // Sessions came back in another order: compare sums.
    let cpu = match (cpu_before, cpu_after) {
        (Some(before), Some(after)) => Some(
            after
                .iter()
                .sum::<Duration>()
                .saturating_sub(before.iter().sum()),
        ),
        _ => None,
    };
    let session = sessions
        .first()
        .context("no session came back from the drain")?;
    let name = drain.name();
    let succeeded = session.count(sql::COUNT_SUCCEEDED).await?;
    let mut figures = figures(&name, jobs, elapsed, cpu, ("succeeded", succeeded))?;
    if drain.triggers == Triggers::All {
        // Each job's 'started' and 'succeeded' events, written by the triggers.
        let events = session.count(sql::COUNT_DRAIN_EVENTS).await?;
        let expected = 2 * jobs;
        if events != expected as i64 {
            bail!("{name}: {events} started/succeeded events, expected {expected}");
        }
        figures.push(Figure {
            expected: Some(expected as f64),
            ..Figure::new(format!("{name}_events"), events as f64, "events")
        });
    }
    Ok(figures)
}

/// W4S: the floor under W4's pickup. Paced as W4 (`warmup` + `jobs` rounds, `interval`
/// apart), on connections idle between rounds: the worker's own claim (`fetch_jobs`,
/// prepared) of one job deferred just before on another connection (untimed, as W4's
/// defer is before its pickup starts), and a bare one-row `UPDATE`, the cheapest write
/// transaction there is; each committed as the server commits by default and, as a
/// worker with `--asynchronous-commit` does, without waiting for the WAL flush.
/// Figures: `W4S_claim[_async]_p50/p99` and `W4S_write[_async]_p50/p99`, in ms.
pub(crate) async fn w4s(
    connect: &ConnectConfig,
    jobs: usize,
    interval: Duration,
    warmup: usize,
) -> anyhow::Result<Vec<Figure>> {
    let deferrer = connect.connect().await?;
    deferrer
        .batch_execute(sql::W4S_TABLE)
        .await
        .context("cannot create W4S's one-row table")?;
    let defer = deferrer.prepare(sql::W4S_DEFER).await?;
    let mut figures = Vec::new();
    for asynchronous in [false, true] {
        let session = connect.connect().await?;
        if asynchronous {
            session.batch_execute(sql::SYNCHRONOUS_COMMIT_OFF).await?;
        }
        let suffix = if asynchronous { "_async" } else { "" };

        let worker_id: i64 = session
            .query_one(queries::REGISTER_WORKER, &[])
            .await?
            .try_get(0)?;
        let claim = session.prepare(queries::FETCH_JOBS).await?;
        let none: Option<Vec<String>> = None;
        let one = 1_i32;
        // The claimed job starts at once (the worker's watermark covers it), as in W4.
        let (no_priority, no_job): (Option<i32>, Option<i64>) = (None, None);
        let mut claims = Vec::with_capacity(jobs);
        paced(jobs + warmup, interval, async |round| {
            deferrer.query(&defer, &[]).await?;
            let started = Instant::now();
            let claimed = session
                .query(
                    &claim,
                    &[&none, &worker_id, &one, &one, &no_priority, &no_job],
                )
                .await?;
            let elapsed = started.elapsed();
            if claimed.len() != 1 {
                bail!("W4S: a claim found {} jobs, expected 1", claimed.len());
            }
            if round >= warmup {
                claims.push(elapsed.as_secs_f64() * 1000.0);
            }
            Ok(())
        })
        .await?;
        latency_figures(&mut figures, &format!("W4S_claim{suffix}"), &claims);

        let write = session.prepare(sql::W4S_WRITE).await?;
        let mut writes = Vec::with_capacity(jobs);
        paced(jobs + warmup, interval, async |round| {
            let started = Instant::now();
            session.execute(&write, &[]).await?;
            if round >= warmup {
                writes.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            Ok(())
        })
        .await?;
        latency_figures(&mut figures, &format!("W4S_write{suffix}"), &writes);
    }
    // Every round claimed its job: they are all doing, none left todo.
    let claimed: i64 = deferrer
        .query_one(sql::COUNT_DOING, &[])
        .await?
        .try_get(0)?;
    let rounds = 2 * (jobs + warmup);
    if claimed != rounds as i64 {
        bail!("W4S: {claimed} jobs claimed, expected {rounds}");
    }
    figures.push(Figure {
        expected: Some(rounds as f64),
        ..Figure::new("W4S_claimed", claimed as f64, "jobs")
    });
    Ok(figures)
}

/// A size as the procedures take it (`integer`); sizes were checked when resolved.
fn int(size: usize) -> anyhow::Result<i32> {
    i32::try_from(size).with_context(|| format!("{size} does not fit an integer"))
}

/// Whether the bench's workers commit asynchronously: the drains' worker processes inherit
/// `POSTPONE_WORKER_ASYNCHRONOUS_COMMIT`, and W4's in-process worker follows it too; read
/// as clap's `FalseyValueParser` reads it.
pub(crate) fn workers_commit_asynchronously() -> bool {
    std::env::var("POSTPONE_WORKER_ASYNCHRONOUS_COMMIT").is_ok_and(|value| {
        !matches!(
            value.trim().to_ascii_lowercase().as_str(),
            "" | "0" | "n" | "no" | "f" | "false" | "off"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::ceilings_sql;

    #[test]
    fn the_worker_statements_are_in_place() {
        let sql = ceilings_sql().expect("no quote clash");
        assert!(!sql.contains("{{"), "a placeholder is left");
        assert!(sql.contains(
            "postpone_fetch_jobs_v2($1::varchar[], $2::bigint, $3::int4, $4::int4, $5::int4, $6::int8)"
        ));
        assert!(sql.contains("postpone_finish_jobs_v1($1::bigint[], $2::text[]::procrastinate_job_status[], $3::bool[])"));
    }
}
