//! The report: as JSON, or as text for a person.

use super::*;

pub(super) fn print_report(report: &Value, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    let f = |key: &str| {
        report
            .get(key)
            .and_then(Value::as_f64)
            .map_or("-".to_owned(), |v| format!("{v:.1}"))
    };
    let pct = |key: &str| {
        let p = &report[key];
        format!(
            "p50 {} ms, p99 {} ms, p99.9 {} ms",
            p["p50"].as_f64().map_or("-".into(), |v| format!("{v:.2}")),
            p["p99"].as_f64().map_or("-".into(), |v| format!("{v:.2}")),
            p["p99.9"]
                .as_f64()
                .map_or("-".into(), |v| format!("{v:.2}")),
        )
    };
    let rss = |key: &str| {
        report[key]
            .as_object()
            .map(|processes| {
                processes
                    .iter()
                    .map(|(name, bytes)| format!("{name} {}", mib(bytes)))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_else(|| "-".to_owned())
    };
    println!(
        "wdtpipe bench ({}{}, scheme {})",
        report["mode"].as_str().unwrap_or("-"),
        if report["up"] == true {
            ", wdtpipe up"
        } else {
            ""
        },
        report["scheme"].as_str().unwrap_or("-")
    );
    println!(
        "  accepted callbacks        {} in {} s",
        report["accepted"],
        f(if report["mode"] == "backlog" {
            "accept_s"
        } else {
            "duration_s"
        })
    );
    println!("  accepted / s              {}", f("accepted_per_s"));
    println!("  ack latency               {}", pct("ack_latency_ms"));
    if report["mode"] == "backlog" {
        println!(
            "  outbox payload / trade    {} bytes",
            f("outbox_payload_bytes_per_trade")
        );
        println!(
            "  outbox disk / trade       {} bytes",
            f("outbox_disk_bytes_per_trade")
        );
        println!(
            "  peak RSS accepting        {}",
            rss("peak_rss_bytes_while_accepting")
        );
        println!(
            "  drain                     {} s, {} trades/s",
            f("drain_s"),
            f("drained_per_s")
        );
        println!(
            "  peak RSS draining         {}",
            rss("peak_rss_bytes_while_draining")
        );
        println!(
            "  outbox writer draining    {}",
            writer(&report["outbox_writer_while_draining"])
        );
        println!(
            "  outbox after drain        {}",
            report["outbox_after_drain"]
        );
    } else if report["mode"] != "target" {
        println!("  delivered to WDT / s      {}", f("delivered_per_s"));
        println!("  accept → WDT latency      {}", pct("accept_to_wdt_ms"));
        println!("  peak RSS                  {}", rss("peak_rss_bytes"));
        println!(
            "  outbox payload / queued   {} bytes (peak {} queued)",
            f("outbox_payload_bytes_per_queued_trade"),
            report["outbox_peak_queued_trades"]
        );
        println!(
            "  outbox disk / queued      {} bytes",
            f("outbox_disk_bytes_per_queued_trade")
        );
        println!(
            "  disk flushes / s          {} ({} callbacks per flush)",
            f("disk_flushes_per_s"),
            f("callbacks_per_flush")
        );
        println!("  trades per WDT call       {}", f("trades_per_wdt_call"));
        println!(
            "  outbox writer             {}",
            writer(&report["outbox_writer"])
        );
    }
    if report["refused"].as_u64().unwrap_or(0) + report["errors"].as_u64().unwrap_or(0) > 0 {
        println!(
            "  refused {}, errors {}",
            report["refused"], report["errors"]
        );
    }
    Ok(())
}
