-- asyncjobs PostgreSQL schema, version 1. Run with search_path set to the store's schema.
-- Times are Unix seconds (double precision), as in the store contract. JSON columns are
-- `json`, not `jsonb`: json keeps the text as written, so values round-trip exactly (key
-- order, and strings holding \u0000, which jsonb refuses), as they do in the other stores.

CREATE TABLE jobs (
    id           text PRIMARY KEY,
    name         text NOT NULL,
    category     text NOT NULL,
    status       text NOT NULL,
    schedule     json NOT NULL,
    steps        json NOT NULL,
    priority     integer NOT NULL,
    shared       json NOT NULL,
    key          text,
    created_at   double precision NOT NULL,
    updated_at   double precision NOT NULL,
    next_fire_at double precision,          -- when the schedule fires next (NULL: never)
    last_fire_at double precision,          -- the latest tick fired: only moves forward
    state        json NOT NULL DEFAULT '{}'
);
CREATE INDEX jobs_due ON jobs (next_fire_at) WHERE status = 'active';
-- An idempotency key is taken while its job is live.
CREATE UNIQUE INDEX jobs_live_key ON jobs (key)
    WHERE key IS NOT NULL AND status IN ('active', 'paused');
CREATE INDEX jobs_created ON jobs (created_at, id);
CREATE INDEX jobs_category ON jobs (category text_pattern_ops);

CREATE TABLE executions (
    id               text PRIMARY KEY,
    job_id           text NOT NULL REFERENCES jobs (id),
    step             integer NOT NULL,
    task             text NOT NULL,
    spec             json NOT NULL,
    status           text NOT NULL,
    priority         integer NOT NULL,
    concurrency      integer,                       -- the task's limit across nodes (NULL: none)
    attempt          integer NOT NULL DEFAULT 1,
    run              integer NOT NULL DEFAULT 0,    -- the fencing token: +1 per claim
    crashes          integer NOT NULL DEFAULT 0,
    cancel_requested boolean NOT NULL DEFAULT false,
    progress         double precision NOT NULL DEFAULT 0,
    progress_message text NOT NULL DEFAULT '',
    result           json,
    error            json,
    created_at       double precision NOT NULL,
    scheduled_for    double precision NOT NULL,
    started_at       double precision,
    ended_at         double precision,
    node             text,
    pid              integer,
    child_pid        integer,                       -- a process execution's child (group leader)
    child_started    text                           -- the child's start time, against reused pids
);
-- The claim walks this index in claim order and stops at the limit.
CREATE INDEX executions_queued ON executions (priority, scheduled_for, id)
    WHERE status = 'queued';
CREATE INDEX executions_waiting ON executions (scheduled_for)
    WHERE status IN ('scheduled', 'retrying');
CREATE INDEX executions_running ON executions (node) WHERE status = 'running';
CREATE INDEX executions_running_task ON executions (task) WHERE status = 'running';
CREATE INDEX executions_job ON executions (job_id, status);
CREATE INDEX executions_status ON executions (status);
CREATE INDEX executions_task ON executions (task);

-- Events are rows first, streams second: state changes, progress and logs, in one sequence.
-- Rows are inserted last in each transaction, under a transaction-level advisory lock: so
-- events commit in sequence order, and a reader that has seen seq N never misses a smaller one.
CREATE TABLE events (
    seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           double precision NOT NULL,
    kind         text NOT NULL,          -- 'state' | 'progress' | 'log'
    job_id       text NOT NULL,
    execution_id text NOT NULL,
    status       text,
    progress     double precision,
    level        integer,
    message      text,
    data         json
);
CREATE INDEX events_execution ON events (execution_id, seq);
CREATE INDEX events_job ON events (job_id, seq);
CREATE INDEX events_log_at ON events (at) WHERE kind = 'log';

-- One row per fired tick: a (job, tick) fires once, whoever fires it, on any node.
CREATE TABLE ticks (
    job_id  text NOT NULL,
    tick    double precision NOT NULL,
    PRIMARY KEY (job_id, tick)
);

CREATE TABLE categories (
    name       text PRIMARY KEY,
    created_at double precision NOT NULL
);

CREATE TABLE nodes (
    id           text PRIMARY KEY,
    host         text NOT NULL,
    pid          integer NOT NULL,
    started_at   double precision NOT NULL,
    heartbeat_at double precision NOT NULL
);
