-- Version 6: unread notification counts kept as counters per user and room
-- (with the read position they count from), instead of counted again on
-- every /sync: a notification adds one when it is newer than the read
-- position; a read receipt moves the position and counts what is left after
-- it (usually nothing).
CREATE TABLE unread_counts(
    user_id TEXT NOT NULL,
    room_nid INTEGER NOT NULL,
    read_pos INTEGER NOT NULL,
    notifs INTEGER NOT NULL,
    highlights INTEGER NOT NULL,
    PRIMARY KEY(user_id, room_nid)
) WITHOUT ROWID;
INSERT INTO unread_counts(user_id, room_nid, read_pos, notifs, highlights)
SELECT k.user_id, k.room_nid, k.p,
    (SELECT COUNT(*) FROM notifications n
     WHERE n.user_id = k.user_id AND n.room_nid = k.room_nid AND n.stream_pos > k.p),
    (SELECT COALESCE(SUM(n.highlight), 0) FROM notifications n
     WHERE n.user_id = k.user_id AND n.room_nid = k.room_nid AND n.stream_pos > k.p)
FROM (
    SELECT u.user_id, u.room_nid, COALESCE((
        SELECT MAX(r.event_pos) FROM receipts r JOIN rooms ro ON ro.room_id = r.room_id
        WHERE ro.nid = u.room_nid AND r.user_id = u.user_id
          AND r.receipt_type IN ('m.read', 'm.read.private')), 0) AS p
    FROM (
        SELECT user_id, room_nid FROM notifications
        UNION
        SELECT r.user_id, ro.nid FROM receipts r JOIN rooms ro ON ro.room_id = r.room_id
    ) u
) k;
