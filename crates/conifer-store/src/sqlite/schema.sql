-- Conifer homeserver schema, version 1.
CREATE TABLE users(
  user_id TEXT PRIMARY KEY, password_hash TEXT, created_ts INTEGER NOT NULL,
  admin INTEGER NOT NULL DEFAULT 0, deactivated INTEGER NOT NULL DEFAULT 0,
  displayname TEXT, avatar_url TEXT);
CREATE TABLE devices(
  user_id TEXT NOT NULL, device_id TEXT NOT NULL, display_name TEXT,
  last_seen_ts INTEGER, last_seen_ip TEXT, PRIMARY KEY(user_id, device_id));
CREATE TABLE access_tokens(token TEXT PRIMARY KEY, user_id TEXT NOT NULL, device_id TEXT NOT NULL);
CREATE INDEX access_tokens_user ON access_tokens(user_id, device_id);
CREATE TABLE login_tokens(token TEXT PRIMARY KEY, user_id TEXT NOT NULL, expires_ts INTEGER NOT NULL);
CREATE TABLE filters(user_id TEXT NOT NULL, filter_id INTEGER NOT NULL, json TEXT NOT NULL, PRIMARY KEY(user_id, filter_id));

CREATE TABLE rooms(
  nid INTEGER PRIMARY KEY, room_id TEXT UNIQUE NOT NULL, version TEXT NOT NULL,
  published INTEGER NOT NULL DEFAULT 0, state_group INTEGER);
CREATE TABLE room_aliases(alias TEXT PRIMARY KEY, room_id TEXT NOT NULL, creator TEXT NOT NULL);
-- Interned (type, state_key) pairs.
CREATE TABLE state_keys(nid INTEGER PRIMARY KEY, type TEXT NOT NULL, state_key TEXT NOT NULL, UNIQUE(type, state_key));
CREATE TABLE events(
  nid INTEGER PRIMARY KEY, event_id TEXT UNIQUE NOT NULL, room_nid INTEGER NOT NULL,
  stream_pos INTEGER NOT NULL, depth INTEGER NOT NULL, type TEXT NOT NULL, state_key TEXT,
  sender TEXT NOT NULL, json TEXT NOT NULL, state_group INTEGER NOT NULL);
CREATE INDEX events_room_pos ON events(room_nid, stream_pos);
-- A state group is a delta on its parent; parent NULL means a full snapshot.
CREATE TABLE state_groups(id INTEGER PRIMARY KEY, room_nid INTEGER NOT NULL, parent INTEGER, chain_len INTEGER NOT NULL);
CREATE TABLE state_group_entries(group_id INTEGER NOT NULL, key_nid INTEGER NOT NULL, event_nid INTEGER NOT NULL, PRIMARY KEY(group_id, key_nid)) WITHOUT ROWID;
CREATE TABLE forward_extremities(room_nid INTEGER NOT NULL, event_nid INTEGER NOT NULL, PRIMARY KEY(room_nid, event_nid)) WITHOUT ROWID;
CREATE TABLE memberships(
  room_nid INTEGER NOT NULL, user_id TEXT NOT NULL, membership TEXT NOT NULL,
  event_nid INTEGER NOT NULL, stream_pos INTEGER NOT NULL, forgotten INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY(room_nid, user_id));
CREATE INDEX memberships_user ON memberships(user_id);
CREATE TABLE client_txns(user_id TEXT NOT NULL, device_id TEXT NOT NULL, txn_id TEXT NOT NULL, event_id TEXT NOT NULL, PRIMARY KEY(user_id, device_id, txn_id));
CREATE TABLE notifications(user_id TEXT NOT NULL, room_nid INTEGER NOT NULL, stream_pos INTEGER NOT NULL, highlight INTEGER NOT NULL, PRIMARY KEY(user_id, room_nid, stream_pos));

CREATE TABLE account_data(
  user_id TEXT NOT NULL, room_id TEXT NOT NULL, type TEXT NOT NULL, content TEXT NOT NULL,
  stream_pos INTEGER NOT NULL, PRIMARY KEY(user_id, room_id, type));
CREATE INDEX account_data_pos ON account_data(user_id, stream_pos);
CREATE TABLE receipts(
  room_id TEXT NOT NULL, user_id TEXT NOT NULL, receipt_type TEXT NOT NULL, thread_id TEXT NOT NULL,
  event_id TEXT NOT NULL, event_pos INTEGER, ts INTEGER NOT NULL, stream_pos INTEGER NOT NULL,
  PRIMARY KEY(room_id, user_id, receipt_type, thread_id));
CREATE INDEX receipts_pos ON receipts(room_id, stream_pos);
CREATE TABLE to_device(id INTEGER PRIMARY KEY, user_id TEXT NOT NULL, device_id TEXT NOT NULL, stream_pos INTEGER NOT NULL, json TEXT NOT NULL);
CREATE INDEX to_device_dev ON to_device(user_id, device_id, stream_pos);
CREATE TABLE presence(user_id TEXT PRIMARY KEY, presence TEXT NOT NULL, status_msg TEXT, last_active_ts INTEGER NOT NULL, stream_pos INTEGER NOT NULL);

CREATE TABLE device_keys(user_id TEXT NOT NULL, device_id TEXT NOT NULL, json TEXT NOT NULL, PRIMARY KEY(user_id, device_id));
CREATE TABLE one_time_keys(user_id TEXT NOT NULL, device_id TEXT NOT NULL, key_id TEXT NOT NULL, algorithm TEXT NOT NULL, json TEXT NOT NULL, PRIMARY KEY(user_id, device_id, key_id));
CREATE TABLE fallback_keys(user_id TEXT NOT NULL, device_id TEXT NOT NULL, algorithm TEXT NOT NULL, key_id TEXT NOT NULL, json TEXT NOT NULL, used INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(user_id, device_id, algorithm));
CREATE TABLE cross_signing_keys(user_id TEXT NOT NULL, key_type TEXT NOT NULL, json TEXT NOT NULL, PRIMARY KEY(user_id, key_type));
CREATE TABLE key_changes(user_id TEXT PRIMARY KEY, stream_pos INTEGER NOT NULL);
CREATE TABLE backup_versions(user_id TEXT NOT NULL, version INTEGER NOT NULL, algorithm TEXT NOT NULL, auth_data TEXT NOT NULL, etag INTEGER NOT NULL DEFAULT 0, deleted INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(user_id, version));
CREATE TABLE backup_keys(user_id TEXT NOT NULL, version INTEGER NOT NULL, room_id TEXT NOT NULL, session_id TEXT NOT NULL, json TEXT NOT NULL, PRIMARY KEY(user_id, version, room_id, session_id));

CREATE TABLE media(media_id TEXT PRIMARY KEY, sha256 TEXT NOT NULL, content_type TEXT NOT NULL, filename TEXT, size INTEGER NOT NULL, uploader TEXT NOT NULL, created_ts INTEGER NOT NULL);
