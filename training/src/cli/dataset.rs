//! `ferroserve-train dataset`: the platform's five metrics from Prometheus, as the anomaly notebook's 45
//! features in a CSV, with its provenance beside it.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use ferroserve_train::features::{self, FeatureTable, Provenance, WARMUP};
use ferroserve_train::prometheus::{Grid, Prometheus, Query};

use super::{UsageError, parse_time};

#[derive(Debug, Args)]
pub struct DatasetArgs {
    /// Prometheus's URL (http only), e.g. http://127.0.0.1:9090.
    #[arg(long, value_name = "URL")]
    prometheus: String,
    /// The first row's time: RFC 3339 (2026-01-05T00:00:00Z), Unix seconds, or relative to now (`now-7d`, as a
    /// scheduled job asks for the last week).
    #[arg(long, value_parser = parse_instant)]
    start: i64,
    /// The last row's time (rows stop at the last step not after it): RFC 3339, Unix seconds, `now` or `now-1h`.
    #[arg(long, value_parser = parse_instant, default_value = "now")]
    end: i64,
    /// Time between rows (1m, 30s, or seconds); the feature names (mean_5m, lag_5) assume 1m.
    #[arg(long, default_value = "1m", value_parser = parse_step)]
    step: i64,
    /// Replace one metric's PromQL: NAME=PROMQL, NAME one of node_cpu_utilization, node_memory_utilization,
    /// pod_cpu_usage, pod_memory_usage, container_restarts (repeatable).
    #[arg(long = "query", value_name = "NAME=PROMQL")]
    queries: Vec<String>,
    /// Seconds to wait for each answer of Prometheus.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
    /// The CSV to write; its provenance goes beside it (OUT.provenance.json).
    #[arg(long)]
    out: PathBuf,
}

/// RFC 3339, Unix seconds, `now` or `now-DURATION` (`now-7d`, `now-90m`) → Unix seconds.
fn parse_instant(s: &str) -> Result<i64, String> {
    if let Some(rest) = s.strip_prefix("now") {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|e| e.to_string())?.as_secs();
        let now = i64::try_from(now).map_err(|e| e.to_string())?;
        if rest.is_empty() {
            return Ok(now);
        }
        let ago = rest
            .strip_prefix('-')
            .and_then(|d| humantime::parse_duration(d).ok())
            .ok_or_else(|| format!("`{s}`: expected `now` or `now-DURATION` (now-7d, now-12h)"))?;
        return i64::try_from(ago.as_secs()).map(|ago| now - ago).map_err(|_| format!("`{s}` is too long ago"));
    }
    if let Ok(secs) = s.parse::<i64>() {
        return Ok(secs);
    }
    let t = parse_time(s).map_err(|_| format!("`{s}` is neither an RFC 3339 time nor Unix seconds"))?;
    let secs = t.duration_since(UNIX_EPOCH).map_err(|_| format!("`{s}` is before 1970"))?.as_secs();
    i64::try_from(secs).map_err(|_| format!("`{s}` is too far in the future"))
}

/// `1m`, `30s` or whole seconds → seconds.
fn parse_step(s: &str) -> Result<i64, String> {
    let d = match s.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(s).map_err(|e| format!("`{s}` is not a duration: {e}"))?,
    };
    if d.subsec_nanos() != 0 || d.as_secs() == 0 {
        return Err(format!("`{s}`: the step is a whole number of seconds, at least 1"));
    }
    i64::try_from(d.as_secs()).map_err(|_| format!("`{s}` is too long"))
}

/// Queries, builds the features, writes the CSV and its provenance, and says what it wrote.
pub fn run(args: &DatasetArgs) -> anyhow::Result<()> {
    let mut queries = Query::defaults();
    for q in &args.queries {
        let (name, promql) =
            q.split_once('=').ok_or_else(|| UsageError(format!("--query `{q}` is not NAME=PROMQL")))?;
        let names = queries.iter().map(|q| q.name.clone()).collect::<Vec<_>>().join(", ");
        let slot = queries.iter_mut().find(|d| d.name == name.trim()).ok_or_else(|| {
            UsageError(format!("--query: `{}` is not a metric of the data set ({names})", name.trim()))
        })?;
        slot.promql = promql.trim().to_owned();
    }
    let warmup = i64::try_from(WARMUP).unwrap_or(5) * args.step;
    let grid = Grid::new(args.start - warmup, args.end, args.step)
        .map_err(|_| UsageError(format!("--end {} is before --start {}", args.end, args.start)))?;
    if args.step != 60 {
        eprintln!(
            "warning: --step {}s: the 5-point windows and lags span {}s, not the 5 minutes their names say",
            args.step,
            5 * args.step
        );
    }
    let prometheus = Prometheus::new(&args.prometheus, Duration::from_secs(args.timeout_secs))?;
    let queried_at = SystemTime::now();
    let mut series = Vec::with_capacity(queries.len());
    for q in &queries {
        series.push((q.name.clone(), prometheus.query_range(&q.promql, &grid)?));
    }
    let table = FeatureTable::build(&series, &grid, WARMUP);
    let provenance = Provenance {
        url: args.prometheus.clone(),
        queries: queries.into_iter().map(|q| (q.name, q.promql)).collect(),
        grid,
        rows: table.rows(),
        queried_at,
    };
    super::create_parent(&args.out)?;
    let sidecar = features::write_dataset(&args.out, &table, &provenance)?;
    println!(
        "{}: {} rows × {} features from {} ({} to {}, step {}s); provenance in {}",
        args.out.display(),
        table.rows(),
        table.names.len(),
        args.prometheus,
        features::unix_rfc3339(grid.at(WARMUP)),
        features::unix_rfc3339(grid.end),
        args.step,
        sidecar.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_absolute_or_relative_to_now() {
        assert_eq!(parse_instant("2026-01-05T00:00:00Z"), Ok(1_767_571_200));
        assert_eq!(parse_instant("1767571200"), Ok(1_767_571_200));
        let now = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap();
        let week = parse_instant("now-7d").unwrap();
        assert!((now - 7 * 86_400..=now - 7 * 86_400 + 5).contains(&week), "{week} vs {now}");
        assert!((now..=now + 5).contains(&parse_instant("now").unwrap()));
        for bad in ["now+1d", "now-", "now-soon", "yesterday"] {
            assert!(parse_instant(bad).is_err(), "{bad}");
        }
    }
}
