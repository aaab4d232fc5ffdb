-- asyncjobs PostgreSQL schema, version 3. Run with search_path set to the store's schema.
-- Only a schedule's job has a next fire time. A one-off job (most jobs) is active too, and in
-- the version-1 index it cost an index entry written at its insert and again at its end, for
-- an entry nobody asks for: the due query compares next_fire_at, which implies NOT NULL, so
-- the planner uses this narrower index for it.
DROP INDEX jobs_due;
CREATE INDEX jobs_due ON jobs (next_fire_at) WHERE status = 'active' AND next_fire_at IS NOT NULL;
