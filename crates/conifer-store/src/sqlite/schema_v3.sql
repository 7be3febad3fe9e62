-- Version 3: invites to rooms this server is not in, received over
-- federation, until the user joins the room. A rejected invite stays, as
-- membership 'leave' with the leave event, so that /sync can tell clients.
CREATE TABLE remote_invites(
  room_id TEXT NOT NULL, user_id TEXT NOT NULL, event_id TEXT NOT NULL,
  room_version TEXT NOT NULL, json TEXT NOT NULL, invite_state TEXT NOT NULL,
  stream_pos INTEGER NOT NULL, membership TEXT NOT NULL DEFAULT 'invite',
  PRIMARY KEY(room_id, user_id)) WITHOUT ROWID;
CREATE INDEX remote_invites_user ON remote_invites(user_id);
