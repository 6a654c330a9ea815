"""The raw-SQL floor of the leaderboard: the same best-epoch rows from a SQLite store with
``sqlite3`` alone (a grouped query picks each run's epoch, a join reads its values, a pivot in
dicts, the ``csv`` writer).

``python -m bench.leaderboard_floor STORE.db OUT.csv``: what a 20-line script costs; the
bench divides the real ``deepfake-detect leaderboard`` by it (``leaderboard_vs_sql_floor``).
"""

import csv
import sqlite3
import sys

SPLITS, NAMES = ("train", "val", "test"), ("loss", "acc", "precision", "recall", "auc")
KEYS = [f"{s}_{n}" for s in SPLITS for n in (*NAMES, "fn", "fp", "tn", "tp")]
CHOSEN = """CREATE TEMP TABLE chosen AS SELECT r.run_uuid, r.name,
  COALESCE(CAST(b.value AS INTEGER), v.step) AS step FROM runs r
  LEFT JOIN (SELECT run_uuid, value, MAX(timestamp) FROM metrics WHERE key = 'best_epoch'
             GROUP BY run_uuid) b ON b.run_uuid = r.run_uuid
  LEFT JOIN (SELECT run_uuid, step, MAX(value) FROM metrics WHERE key = 'val_auc'
             GROUP BY run_uuid) v ON v.run_uuid = r.run_uuid
  WHERE r.status = 'FINISHED' AND r.lifecycle_stage = 'active'"""
VALUES = f"""SELECT c.name, c.run_uuid, m.key, m.value FROM chosen c JOIN metrics m
  ON m.run_uuid = c.run_uuid AND m.step = c.step AND m.key IN ({", ".join("?" * len(KEYS))})
  ORDER BY m.timestamp"""

if __name__ == "__main__":
    rows: dict[str, dict[str, object]] = {}
    with sqlite3.connect(sys.argv[1]) as db:
        db.execute(CHOSEN)
        for name, run_id, key, value in db.execute(VALUES, KEYS):
            rows.setdefault(run_id, {"model": name, "run_id": run_id})[key] = value
    with open(sys.argv[2], "w", newline="") as out:
        writer = csv.DictWriter(out, ["model", *KEYS, "run_id"], restval="")
        writer.writeheader()
        writer.writerows(sorted(rows.values(), key=lambda r: -float(r.get("val_auc", 0))))
