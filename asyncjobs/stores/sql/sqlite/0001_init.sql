-- asyncjobs SQLite schema, version 1.
-- Times are Unix seconds (REAL). JSON columns hold orjson-encoded text.

CREATE TABLE jobs (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    category    TEXT NOT NULL,
    status      TEXT NOT NULL,
    schedule    TEXT NOT NULL,
    steps       TEXT NOT NULL,
    priority    INTEGER NOT NULL,
    shared      TEXT NOT NULL,
    key         TEXT,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL,
    next_fire_at REAL,                  -- when the schedule fires next (NULL: never)
    last_fire_at REAL,                  -- the latest tick fired: only moves forward
    state       TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX jobs_due ON jobs (next_fire_at) WHERE status = 'active';
-- An idempotency key is taken while its job is live.
CREATE UNIQUE INDEX jobs_live_key ON jobs (key)
    WHERE key IS NOT NULL AND status IN ('active', 'paused');
CREATE INDEX jobs_created ON jobs (created_at, id);
CREATE INDEX jobs_category ON jobs (category);

CREATE TABLE executions (
    id               TEXT PRIMARY KEY,
    job_id           TEXT NOT NULL REFERENCES jobs (id),
    step             INTEGER NOT NULL,
    task             TEXT NOT NULL,
    spec             TEXT NOT NULL,
    status           TEXT NOT NULL,
    priority         INTEGER NOT NULL,
    concurrency      INTEGER,               -- the task's limit across nodes (NULL: none)
    attempt          INTEGER NOT NULL DEFAULT 1,
    run              INTEGER NOT NULL DEFAULT 0,   -- the fencing token: +1 per claim
    crashes          INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    progress         REAL NOT NULL DEFAULT 0,
    progress_message TEXT NOT NULL DEFAULT '',
    result           TEXT,
    error            TEXT,
    created_at       REAL NOT NULL,
    scheduled_for    REAL NOT NULL,
    started_at       REAL,
    ended_at         REAL,
    node             TEXT,
    pid              INTEGER,
    child_pid        INTEGER,              -- a process execution's child (its group leader)
    child_started    TEXT                  -- the child's start time, against reused pids
);
-- The claim walks this index in claim order and stops at the limit.
CREATE INDEX executions_queued ON executions (priority, scheduled_for, id)
    WHERE status = 'queued';
CREATE INDEX executions_waiting ON executions (scheduled_for)
    WHERE status IN ('scheduled', 'retrying');
CREATE INDEX executions_running ON executions (node) WHERE status = 'running';
CREATE INDEX executions_job ON executions (job_id, status);
CREATE INDEX executions_status ON executions (status);

-- Events are rows first, streams second: state changes, progress and logs, in one sequence.
CREATE TABLE events (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    at           REAL NOT NULL,
    kind         TEXT NOT NULL,          -- 'state' | 'progress' | 'log'
    job_id       TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    status       TEXT,
    progress     REAL,
    level        INTEGER,
    message      TEXT,
    data         TEXT
);
CREATE INDEX events_execution ON events (execution_id, seq);
CREATE INDEX events_job ON events (job_id, seq);

-- One row per fired tick: a (job, tick) fires once, whoever fires it.
CREATE TABLE ticks (
    job_id  TEXT NOT NULL,
    tick    REAL NOT NULL,
    PRIMARY KEY (job_id, tick)
);

CREATE TABLE categories (
    name       TEXT PRIMARY KEY,
    created_at REAL NOT NULL
);

CREATE TABLE nodes (
    id           TEXT PRIMARY KEY,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    started_at   REAL NOT NULL,
    heartbeat_at REAL NOT NULL
);
