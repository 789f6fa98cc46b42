"""Fits the benchmark's models; every server serves the same file.

    python make_model.py example              OUT_DIR   IsolationForest (100 trees, seed 0) on examples/data/metrics.csv's
                                                        six metrics -> OUT_DIR/model.joblib
    python make_model.py anomaly-detector     OUT_DIR   the platform's anomaly detector, as its notebook saves it:
                                                        joblib.dump(Pipeline([RobustScaler, IsolationForest(200 trees)]))
                                                        on 45 features -> OUT_DIR/model.pkl
    python make_model.py predictive-analytics OUT_DIR   the platform's forecaster: joblib.dump(Pipeline([StandardScaler,
                                                        MultiOutputRegressor(XGBRegressor(100 trees, depth 10))]))
                                                        on 30 features -> 5 targets -> OUT_DIR/model.pkl

Each also writes OUT_DIR/rows.csv (the rows the load generator sends, a header of feature names) and
OUT_DIR/columns.txt (those names, comma-separated, in the model's order). The platform's feature layouts are its
notebooks': 5 metrics x (value, 5-minute mean/std/min/max, lags 1 and 5, diff, pct_change) for the anomaly detector
(what `ferroserve-train dataset` writes), 5 metrics x (value, 5-minute mean/std, lags 1/5/15) for the forecaster. The
metrics are synthetic (a daily cycle plus noise, seeded), on the scales Prometheus reports them.
"""

import csv
import os
import sys

import joblib
import numpy as np

METRICS = ["node_cpu_utilization", "node_memory_utilization", "pod_cpu_usage", "pod_memory_usage",
           "container_restarts"]


def series(n, seed):
    """Five metrics over n minutes."""
    rng = np.random.RandomState(seed)
    t = np.arange(n)
    day = np.sin(2 * np.pi * t / 1440.0)
    return np.column_stack([
        0.45 + 0.25 * day + rng.randn(n) * 0.03,
        0.60 + 0.05 * day + np.cumsum(rng.randn(n) * 0.001),
        3.0 + 1.5 * day + np.abs(rng.randn(n) * 0.3),
        2.0e9 + 4.0e8 * day + rng.randn(n) * 5.0e7,
        np.cumsum(rng.rand(n) < 0.01).astype(float),
    ])


def rolling(v, stat, w=5):
    """`stat` over the last `w` values at each step (fewer at the start), as pandas' `rolling(w, min_periods=1)`."""
    return np.array([stat(v[max(0, i - w + 1): i + 1]) for i in range(len(v))])


def features(base, columns):
    """Per metric, the named `columns(v)` (a list of (name, values)) side by side: `metric_name` headers."""
    names, cols = [], []
    for m, metric in enumerate(METRICS):
        for name, col in columns(base[:, m]):
            names.append(f"{metric}_{name}")
            cols.append(col)
    return names, np.column_stack(cols)


def anomaly_columns(v):
    lag1 = np.roll(v, 1)
    diff = v - lag1
    pct = np.divide(diff, lag1, out=np.zeros_like(v), where=lag1 != 0)
    return [("value", v), ("mean_5m", rolling(v, np.mean)), ("std_5m", rolling(v, np.std)),
            ("min_5m", rolling(v, np.min)), ("max_5m", rolling(v, np.max)), ("lag_1", lag1),
            ("lag_5", np.roll(v, 5)), ("diff", diff), ("pct_change", pct)]


def forecast_columns(v):
    return [("value", v), ("mean_5m", rolling(v, np.mean)), ("std_5m", rolling(v, np.std)), ("lag_1", np.roll(v, 1)),
            ("lag_5", np.roll(v, 5)), ("lag_15", np.roll(v, 15))]


def write_rows(out, names, x):
    with open(os.path.join(out, "rows.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(names)
        w.writerows([[f"{v:.6g}" for v in row] for row in x])
    with open(os.path.join(out, "columns.txt"), "w") as f:
        f.write(",".join(names) + "\n")


def example(out):
    features = ["cpu_usage", "memory_usage", "latency_p95_ms", "error_rate", "pod_restarts", "request_rate"]
    with open("examples/data/metrics.csv") as f:
        rows = [[float(r[c]) for c in features] for r in csv.DictReader(f)]
    x = np.asarray(rows, dtype=np.float32)
    from sklearn.ensemble import IsolationForest
    joblib.dump(IsolationForest(n_estimators=100, random_state=0).fit(x), os.path.join(out, "model.joblib"))
    write_rows(out, features, x)
    return f"IsolationForest, 100 trees, fitted on {len(rows)} rows of 6 features"


def anomaly_detector(out):
    from sklearn.ensemble import IsolationForest
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import RobustScaler
    names, x = features(series(10_085, seed=7), anomaly_columns)
    x = x[5:]
    model = Pipeline([("scaler", RobustScaler()),
                      ("model", IsolationForest(n_estimators=200, contamination=0.05, random_state=42))])
    joblib.dump(model.fit(x), os.path.join(out, "model.pkl"))
    write_rows(out, names, x[-2000:])
    return f"Pipeline(RobustScaler, IsolationForest 200 trees), fitted on {len(x)} rows of {x.shape[1]} features"


def predictive_analytics(out):
    import xgboost as xgb
    from sklearn.multioutput import MultiOutputRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    base = series(6_000, seed=11)
    names, feats = features(base, forecast_columns)
    x, y = feats[15:-15], base[30:]
    model = Pipeline([("scaler", StandardScaler()),
                      ("model", MultiOutputRegressor(xgb.XGBRegressor(n_estimators=100, max_depth=10,
                                                                      learning_rate=0.1, n_jobs=1,
                                                                      random_state=42)))])
    joblib.dump(model.fit(x, y), os.path.join(out, "model.pkl"))
    write_rows(out, names, x[-2000:])
    return f"Pipeline(StandardScaler, MultiOutputRegressor(5 x XGBRegressor 100 trees, depth 10)), " \
           f"fitted on {len(x)} rows of {x.shape[1]} features"


KINDS = {"example": example, "anomaly-detector": anomaly_detector, "predictive-analytics": predictive_analytics}

if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in KINDS:
        sys.exit(f"usage: make_model.py {{{'|'.join(KINDS)}}} OUT_DIR")
    kind, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    print(f"{out}: {KINDS[kind](out)}")
