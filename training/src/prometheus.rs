//! Reading metric series from Prometheus's HTTP API (`GET /api/v1/query_range`), for
//! `ferroserve-train dataset`.
//!
//! Each query must give one series (an aggregate such as `sum(…)`): the data set has one column per
//! metric. Long ranges are asked for in pieces of at most [`MAX_POINTS`] steps, under Prometheus's limit
//! of 11,000 points a series per query. Plain `http://` only: no TLS is built in (reach a cluster's
//! Prometheus through `kubectl port-forward`).

use std::time::Duration;

use serde_json::Value;

use crate::error::{Error, Result};

/// The platform's five metrics, in the data set's order: the column prefix and the default PromQL.
pub const DEFAULT_QUERIES: [(&str, &str); 5] = [
    ("node_cpu_utilization", r#"1 - avg(rate(node_cpu_seconds_total{mode="idle"}[5m]))"#),
    ("node_memory_utilization", "1 - sum(node_memory_MemAvailable_bytes) / sum(node_memory_MemTotal_bytes)"),
    ("pod_cpu_usage", "sum(rate(container_cpu_usage_seconds_total[5m]))"),
    ("pod_memory_usage", "sum(container_memory_working_set_bytes)"),
    ("container_restarts", "sum(kube_pod_container_status_restarts_total)"),
];

/// Most steps asked for in one request.
pub const MAX_POINTS: i64 = 10_000;

/// A metric of the data set: its column prefix and its PromQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The column prefix (`node_cpu_utilization`).
    pub name: String,
    /// The PromQL expression.
    pub promql: String,
}

impl Query {
    /// The five default queries, in order.
    pub fn defaults() -> Vec<Query> {
        DEFAULT_QUERIES.iter().map(|(n, q)| Query { name: (*n).to_owned(), promql: (*q).to_owned() }).collect()
    }
}

/// An evaluation grid: `start`, `start + step`, … up to `end` inclusive, in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    /// The first time.
    pub start: i64,
    /// The last time (on the grid: `start + k × step`).
    pub end: i64,
    /// Seconds between points.
    pub step: i64,
}

impl Grid {
    /// The grid from `start` to the last point not after `end`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] when `step` is not positive or `end` is before `start`.
    pub fn new(start: i64, end: i64, step: i64) -> Result<Grid> {
        if step <= 0 {
            return Err(Error::parameter("step", step, "must be at least one second"));
        }
        if end < start {
            return Err(Error::parameter("end", end, format!("is before start ({start})")));
        }
        Ok(Grid { start, end: start + (end - start) / step * step, step })
    }

    /// The number of points.
    pub fn len(&self) -> usize {
        usize::try_from((self.end - self.start) / self.step + 1).unwrap_or(0)
    }

    /// Whether the grid has no point (never, once built).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The point `i`, in Unix seconds.
    pub fn at(&self, i: usize) -> i64 {
        self.start + i64::try_from(i).unwrap_or(i64::MAX) * self.step
    }
}

/// A Prometheus server.
#[derive(Debug)]
pub struct Prometheus {
    base: String,
    agent: ureq::Agent,
}

impl Prometheus {
    /// A client of the server at `url` (`http://host:9090`, with or without a path prefix).
    ///
    /// # Errors
    /// [`Error::Prometheus`] for a URL that is not `http://`.
    pub fn new(url: &str, timeout: Duration) -> Result<Prometheus> {
        let base = url.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") {
            return Err(Error::Prometheus {
                url: url.to_owned(),
                reason: "only http:// URLs are supported (reach an https endpoint through a port-forward)".to_owned(),
            });
        }
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            // Prometheus explains a bad query in the body of its 400: read it rather than a bare status.
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Prometheus { base, agent })
    }

    /// The values of `promql` on `grid`, one per point: NaN where Prometheus has none (no sample within
    /// its lookback), and where it returned NaN.
    ///
    /// # Errors
    /// [`Error::Prometheus`] when the server cannot be reached, answers with an error, or the query gives
    /// no series or more than one.
    pub fn query_range(&self, promql: &str, grid: &Grid) -> Result<Vec<f64>> {
        let mut values = vec![f64::NAN; grid.len()];
        let mut series_seen = false;
        let mut from = grid.start;
        while from <= grid.end {
            let to = (from + (MAX_POINTS - 1) * grid.step).min(grid.end);
            let (points, series) = self.request(promql, from, to, grid.step)?;
            series_seen |= series;
            for (t, v) in points {
                let offset = t - grid.start;
                if offset % grid.step == 0
                    && let Ok(i) = usize::try_from(offset / grid.step)
                    && let Some(slot) = values.get_mut(i)
                {
                    *slot = v;
                }
            }
            from = to + grid.step;
        }
        if !series_seen {
            return Err(self.error(format!("`{promql}` returned no series between {} and {}", grid.start, grid.end)));
        }
        Ok(values)
    }

    /// One request: the points of the only series (if any), and whether there was one.
    fn request(&self, promql: &str, start: i64, end: i64, step: i64) -> Result<(Vec<(i64, f64)>, bool)> {
        let url = format!("{}/api/v1/query_range", self.base);
        let mut response = self
            .agent
            .get(&url)
            .query("query", promql)
            .query("start", start.to_string())
            .query("end", end.to_string())
            .query("step", step.to_string())
            .call()
            .map_err(|e| self.error(format!("cannot query: {e}")))?;
        let status = response.status();
        let body = response
            .body_mut()
            .with_config()
            .limit(256 << 20)
            .read_to_string()
            .map_err(|e| self.error(format!("reading the answer: {e}")))?;
        let json: Value = serde_json::from_str(&body)
            .map_err(|_| self.error(format!("HTTP {status}, not a Prometheus API answer: {}", snippet(&body))))?;
        if json["status"] != "success" {
            let kind = json["errorType"].as_str().unwrap_or("error");
            let message = json["error"].as_str().unwrap_or("no message");
            return Err(self.error(format!("`{promql}`: {kind}: {message}")));
        }
        let result = json["data"]["result"].as_array().map(Vec::as_slice).unwrap_or_default();
        match result {
            [] => Ok((Vec::new(), false)),
            [series] => Ok((points(&series["values"]).map_err(|r| self.error(format!("`{promql}`: {r}")))?, true)),
            many => Err(self.error(format!(
                "`{promql}` returned {} series ({}, …); each metric must be one series: aggregate it, e.g. sum(…)",
                many.len(),
                many[0]["metric"]
            ))),
        }
    }

    fn error(&self, reason: String) -> Error {
        Error::Prometheus { url: self.base.clone(), reason }
    }
}

/// `[[1735689600, "0.25"], …]` → `[(1735689600, 0.25), …]`; Prometheus writes `NaN`, `+Inf`, `-Inf` too.
fn points(values: &Value) -> std::result::Result<Vec<(i64, f64)>, String> {
    let values = values.as_array().ok_or("the series has no `values`")?;
    values
        .iter()
        .map(|p| {
            let t = p[0].as_f64().ok_or_else(|| format!("bad point {p}"))?;
            let v = p[1].as_str().and_then(|s| s.parse::<f64>().ok()).ok_or_else(|| format!("bad point {p}"))?;
            #[allow(clippy::cast_possible_truncation)]
            Ok((t.round() as i64, v))
        })
        .collect()
}

fn snippet(body: &str) -> String {
    let line = body.lines().next().unwrap_or("").trim();
    line.chars().take(120).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_end_on_a_step() {
        let g = Grid::new(100, 390, 60).unwrap();
        assert_eq!((g.end, g.len(), g.at(4)), (340, 5, 340));
        assert_eq!(Grid::new(0, 0, 60).unwrap().len(), 1);
        assert!(Grid::new(10, 0, 60).is_err() && Grid::new(0, 10, 0).is_err());
    }

    #[test]
    fn points_parse_prometheus_numbers() {
        let v: Value = serde_json::json!([[1.0, "0.5"], [61.0, "NaN"], [121, "+Inf"]]);
        let p = points(&v).unwrap();
        assert_eq!((p[0], p[1].0, p[2]), ((1, 0.5), 61, (121, f64::INFINITY)));
        assert!(p[1].1.is_nan());
        assert!(points(&serde_json::json!([[1.0, 2.0]])).is_err());
    }

    #[test]
    fn only_http_urls() {
        let err = Prometheus::new("https://prom:9090", Duration::from_secs(1)).unwrap_err();
        assert!(err.to_string().contains("only http:// URLs"), "{err}");
        assert!(Prometheus::new("http://127.0.0.1:9090/", Duration::from_secs(1)).is_ok());
    }
}
