-- W2S_no_triggers, W2S_floor, W3S_no_triggers: no event row, no NOTIFY; foreign keys stay.
ALTER TABLE procrastinate_jobs DISABLE TRIGGER USER
