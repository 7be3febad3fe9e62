-- Version 5: users who asked for erasure at deactivation, with the stream
-- position of the request (users who join a room later see their events
-- redacted).
CREATE TABLE erased_users(user_id TEXT PRIMARY KEY, stream_pos INTEGER NOT NULL);
-- Relations by the event they relate to (edits, threads, reactions), for
-- /relations and the aggregations bundled with events.
CREATE INDEX events_relates ON events(json_extract(json, '$.content."m.relates_to".event_id'));
