"""The job database's schema, as numbered migrations (run by :func:`api.db.migrations.migrate`).

Step 1 is the schema as it stood before migrations were numbered: a SQLite file from then
(with or without the ``owner`` column) takes it as a no-op but for that column, and keeps every
row. Add a step for each change; never edit one that has shipped.
"""

from __future__ import annotations

from api.db.connection import Cursor
from api.db.migrations import Migration


def _jobs(time_type: str) -> str:
    return f"""
    CREATE TABLE IF NOT EXISTS jobs (
        id TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        created_at {time_type} NOT NULL,
        updated_at {time_type} NOT NULL,
        slices_total INTEGER NOT NULL DEFAULT 0,
        slices_done INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        error_type TEXT,
        error_title TEXT,
        error_status INTEGER,
        error_detail TEXT,
        owner TEXT
    )
    """


def _deliveries(time_type: str) -> str:
    return f"""
    CREATE TABLE IF NOT EXISTS deliveries (
        job_id TEXT NOT NULL,
        destination TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        since {time_type} NOT NULL,
        next_attempt_at {time_type},
        last_attempt_at {time_type},
        delivered_at {time_type},
        objects TEXT NOT NULL DEFAULT '',
        detail TEXT,
        PRIMARY KEY (job_id, destination)
    )
    """


def _owner_column(cur: Cursor) -> None:
    """Give a SQLite file made before owners its ``owner`` column; its rows keep theirs NULL."""
    columns = {row[1] for row in cur.execute("PRAGMA table_info(jobs)").fetchall()}
    if "owner" not in columns:
        cur.execute("ALTER TABLE jobs ADD COLUMN owner TEXT")


# Listing pages walk (created_at, id) newest first, per owner or across all of them; the
# delivery worker asks for due rows.
INDEXES = (
    "CREATE INDEX IF NOT EXISTS jobs_by_owner ON jobs (owner, created_at, id)",
    "CREATE INDEX IF NOT EXISTS jobs_by_time ON jobs (created_at, id)",
    "CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (state, next_attempt_at)",
)

# Who holds a running job, and until when: a claim sets both, heartbeats push lease_until on.
# A job left running by a process of before leases has none, so it is claimed again at once.
LEASES = (
    "ALTER TABLE jobs ADD COLUMN worker TEXT",
    "ALTER TABLE jobs ADD COLUMN lease_until {time_type}",
    "CREATE INDEX jobs_by_state ON jobs (state, created_at)",
)

# A stat study is claimed before routine ones queued earlier (higher first).
PRIORITIES = (
    "ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0",
    "CREATE INDEX jobs_by_priority ON jobs (state, priority, created_at)",
)

# What the caller sent with the study (api.schemas.submission, as JSON), and the key a retried
# submission is known by: one job per client and key while the key is kept.
SUBMISSIONS = (
    "ALTER TABLE jobs ADD COLUMN metadata TEXT",
    "ALTER TABLE jobs ADD COLUMN idempotency_key TEXT",
    "ALTER TABLE jobs ADD COLUMN request_digest TEXT",
    "CREATE UNIQUE INDEX jobs_by_idempotency_key ON jobs (owner, idempotency_key)",
)


def _webhooks(time_type: str) -> tuple[str, ...]:
    """One event per finished job that has a callback URL (api/study/webhooks.py)."""
    return (f"""
    CREATE TABLE webhooks (
        job_id TEXT PRIMARY KEY,
        event_id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        url TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        since {time_type} NOT NULL,
        next_attempt_at {time_type},
        last_attempt_at {time_type},
        delivered_at {time_type},
        last_status INTEGER,
        detail TEXT
    )
    """, "CREATE INDEX webhooks_due ON webhooks (state, next_attempt_at)")


MIGRATIONS = (
    Migration(
        1, "jobs and deliveries",
        sqlite=(_jobs("REAL"), _owner_column, _deliveries("REAL"), *INDEXES),
        postgres=(_jobs("DOUBLE PRECISION"), _deliveries("DOUBLE PRECISION"), *INDEXES),
    ),
    Migration(
        2, "job claims with leases",
        sqlite=tuple(s.format(time_type="REAL") for s in LEASES),
        postgres=tuple(s.format(time_type="DOUBLE PRECISION") for s in LEASES),
    ),
    Migration(3, "job priorities", sqlite=PRIORITIES, postgres=PRIORITIES),
    Migration(4, "submission metadata and idempotency keys", sqlite=SUBMISSIONS,
              postgres=SUBMISSIONS),
    Migration(5, "webhook events", sqlite=_webhooks("REAL"),
              postgres=_webhooks("DOUBLE PRECISION")),
)
