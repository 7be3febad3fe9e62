-- Version 4: state events of a room by type and key, for history visibility
-- (a user's membership events, the history_visibility events by depth).
CREATE INDEX events_state ON events(room_nid, type, state_key) WHERE state_key IS NOT NULL;
