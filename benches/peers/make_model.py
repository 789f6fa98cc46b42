"""Fits the benchmark's model.joblib: scikit-learn's IsolationForest (100 trees, seed 0) on the example data's six
metrics. Every server serves this same file."""

import csv
import sys

import joblib
import numpy as np
from sklearn.ensemble import IsolationForest

FEATURES = ["cpu_usage", "memory_usage", "latency_p95_ms", "error_rate", "pod_restarts", "request_rate"]

data, out = sys.argv[1], sys.argv[2]
with open(data) as f:
    rows = [[float(r[c]) for c in FEATURES] for r in csv.DictReader(f)]
x = np.asarray(rows, dtype=np.float32)
model = IsolationForest(n_estimators=100, random_state=0).fit(x)
joblib.dump(model, out)
print(f"wrote {out}: IsolationForest, 100 trees, fitted on {len(rows)} rows")
