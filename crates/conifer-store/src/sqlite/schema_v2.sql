-- Version 2: the federation outbox. Items wait here, per destination, until
-- a transaction carrying them is acknowledged.
CREATE TABLE outbox(id INTEGER PRIMARY KEY, destination TEXT NOT NULL, is_pdu INTEGER NOT NULL, json TEXT NOT NULL);
CREATE INDEX outbox_destination ON outbox(destination, id);
