//! The senders: callbacks at a concurrency or a rate, what each saw, and the wait for
//! delivery.

use super::*;

/// What the senders saw.
#[derive(Default)]
pub(super) struct Tally {
    /// Ack latency of every accepted callback, in microseconds.
    pub(super) latencies_us: Vec<u32>,
    /// (tid, Unix ms of the ack) of every accepted callback.
    pub(super) acked: Vec<(String, i64)>,
    pub(super) refused: u64,
    pub(super) errors: u64,
}

/// Sends callbacks to `url` until `stop`, or until `limit` were accepted.
pub(super) async fn load(
    url: String,
    args: &BenchArgs,
    run: &str,
    limit: Option<u64>,
) -> anyhow::Result<(Tally, Duration)> {
    let template: Value = serde_json::from_str(TEMPLATE)?;
    let mut record = template;
    record["tid"] = "@TID@".into();
    record["src_tids"] = "@TID@".into();
    for (i, line) in record["details_list"]
        .as_array_mut()
        .context("details")?
        .iter_mut()
        .enumerate()
    {
        line["src_tid"] = "@TID@".into();
        line["src_oid"] = format!("@TID@-{}", i + 1).into();
    }
    let template = Arc::new(serde_json::to_string(&record)?);
    let client = Arc::new(Poster::new(&url, args.concurrency.max(1) * 2)?);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let accepted = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration);

    let send_one = {
        let (client, template, tally, accepted) = (
            client.clone(),
            template.clone(),
            tally.clone(),
            accepted.clone(),
        );
        move |tid: String| {
            let (client, template, tally, accepted) = (
                client.clone(),
                template.clone(),
                tally.clone(),
                accepted.clone(),
            );
            async move {
                let body = template.replace("@TID@", &tid);
                let began = Instant::now();
                let answer = client.post_json(body).await;
                let elapsed = began.elapsed();
                let mut tally = tally.lock().unwrap();
                match answer {
                    Ok(status) if (200..300).contains(&status) => {
                        tally
                            .latencies_us
                            .push(elapsed.as_micros().min(u32::MAX as u128) as u32);
                        tally.acked.push((tid, wdtpipe_common::now_ms()));
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => tally.refused += 1,
                    Err(_) => tally.errors += 1,
                }
            }
        }
    };

    let progress = {
        let (accepted, stop) = (accepted.clone(), stop.clone());
        tokio::spawn(async move {
            let mut last = 0;
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let now = accepted.load(Ordering::Relaxed);
                eprint!(
                    "\r  {:>5.1}s  accepted {:>9}  ({:>6}/s)   ",
                    started.elapsed().as_secs_f64(),
                    now,
                    now - last
                );
                last = now;
            }
            eprintln!();
        })
    };

    let done = move |accepted: &AtomicU64| match limit {
        Some(limit) => accepted.load(Ordering::Relaxed) >= limit,
        None => Instant::now() >= deadline,
    };
    let mut tasks = tokio::task::JoinSet::new();
    match args.rate.filter(|_| limit.is_none()) {
        None => {
            for worker in 0..args.concurrency.max(1) {
                let (send_one, accepted, sent, run) = (
                    send_one.clone(),
                    accepted.clone(),
                    sent.clone(),
                    run.to_owned(),
                );
                tasks.spawn(async move {
                    let mut n = 0u64;
                    while !done(&accepted) {
                        if limit.is_some_and(|l| sent.fetch_add(1, Ordering::Relaxed) >= l + 64) {
                            break;
                        }
                        n += 1;
                        send_one(format!("{run}-{worker}-{n}")).await;
                    }
                });
            }
        }
        Some(rate) => {
            let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut n = 0u64;
            while !done(&accepted) {
                ticker.tick().await;
                n += 1;
                tasks.spawn(send_one(format!("{run}-r-{n}")));
                while tasks.try_join_next().is_some() {}
            }
        }
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let _ = progress.await;
    let tally = std::mem::take(&mut *tally.lock().unwrap());
    Ok((tally, elapsed))
}

pub(super) fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    f64::from(sorted[index]) / 1000.0
}

pub(super) fn percentiles_ms(mut values: Vec<u32>) -> Value {
    values.sort_unstable();
    json!({
        "p50": percentile(&values, 0.50),
        "p99": percentile(&values, 0.99),
        "p99.9": percentile(&values, 0.999),
        "max": percentile(&values, 1.0),
    })
}

/// Waits until the sandbox holds every acked tid; returns the accept→WDT latencies (ms ×
/// 1000, as µs) and when the last one arrived.
pub(super) async fn wait_delivered(
    sandbox: &Sandbox,
    acked: &[(String, i64)],
    limit: Duration,
) -> anyhow::Result<Vec<u32>> {
    let deadline = Instant::now() + limit;
    loop {
        // Count cheaply while waiting; copy the trades out once, at the end.
        if sandbox.trade_count() >= acked.len() {
            let accepted = sandbox.first_accepted();
            let first: std::collections::HashMap<&str, i64> = accepted
                .iter()
                .map(|(tid, at)| (tid.as_str(), *at))
                .collect();
            let mut latencies = Vec::with_capacity(acked.len());
            let mut missing = 0;
            for (tid, acked_at) in acked {
                match first.get(tid.as_str()) {
                    Some(at) => {
                        latencies.push(((at - acked_at).max(0) * 1000).min(u32::MAX as i64) as u32)
                    }
                    None => missing += 1,
                }
            }
            if missing == 0 {
                return Ok(latencies);
            }
        }
        if Instant::now() > deadline {
            let delivered = sandbox.trade_count().min(acked.len());
            bail!(
                "{} of {} acknowledged callbacks not delivered in time",
                acked.len() - delivered,
                acked.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
