-- Expand-only (see docs/DEPLOY.md, "Schema changes during a rollout"): a new function and a
-- new trigger; migration 0002's trigger and its channel stay as they are.

-- Live delivery with the event itself: every stored event is also published on
-- `ragserve_job_events_v2`, as JSON {"job_id", "seq", "type", "data"}, so that the API streams
-- it from the notification instead of reading the table again (ragserve.jobs.notify.Feed).
-- PostgreSQL refuses payloads of 8000 bytes or more (and would fail the insert): a larger
-- event is announced as {"job_id", "seq", "type", "more": true}, and listeners read it from
-- the table (7500: under the limit with room to spare; such events are rare: a long answer's
-- `done`).
--
-- `ragserve_job_events` (job id only, migration 0002) keeps being sent for API processes of
-- releases before this one during a rolling upgrade; when it can go: docs/DESIGN.md, "Events".
CREATE FUNCTION ragserve_publish_job_event() RETURNS trigger AS $$
DECLARE
    payload text;
BEGIN
    payload := json_build_object(
        'job_id', NEW.job_id, 'seq', NEW.seq, 'type', NEW.type, 'data', NEW.data
    )::text;
    IF octet_length(payload) > 7500 THEN
        payload := json_build_object(
            'job_id', NEW.job_id, 'seq', NEW.seq, 'type', NEW.type, 'more', true
        )::text;
    END IF;
    PERFORM pg_notify('ragserve_job_events_v2', payload);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

-- Fires after `job_events_notify` (triggers of one event fire in name order); every row of a
-- batch insert (token batches) gets its own notification, in seq order.
CREATE TRIGGER job_events_publish AFTER INSERT ON job_events
    FOR EACH ROW EXECUTE FUNCTION ragserve_publish_job_event();
