-- Version 2: the federation outbox. Items wait here, per destination, until
-- a transaction carrying them is acknowledged.
CREATE TABLE outbox(id INTEGER PRIMARY KEY, destination TEXT NOT NULL, is_pdu INTEGER NOT NULL, json TEXT NOT NULL);
CREATE INDEX outbox_destination ON outbox(destination, id);
-- Inbound transactions already processed, so a retried /send is a no-op.
CREATE TABLE inbound_txns(origin TEXT NOT NULL, txn_id TEXT NOT NULL, PRIMARY KEY(origin, txn_id)) WITHOUT ROWID;
