-- asyncjobs PostgreSQL schema, version 2. Run with search_path set to the store's schema.
-- The claim asks which queued executions have a concurrency limit, at every claim: an index
-- of just those keeps that question small however deep the rest of the queue is.
CREATE INDEX executions_limited ON executions (task, concurrency)
    WHERE status = 'queued' AND concurrency IS NOT NULL;
