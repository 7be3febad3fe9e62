-- Version 5: users who asked for erasure at deactivation, with the stream
-- position of the request (users who join a room later see their events
-- redacted).
CREATE TABLE erased_users(user_id TEXT PRIMARY KEY, stream_pos INTEGER NOT NULL);
