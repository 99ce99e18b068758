-- One row per state key a consume transaction has read: taking its row lock (an upsert) before
-- reading the key serializes every read-modify-write of that key across hosts, including a key
-- that does not exist yet (issue 13: state safe across replicas).
CREATE TABLE IF NOT EXISTS switchyard_state_locks (
    service   TEXT NOT NULL,
    state_key TEXT NOT NULL,
    PRIMARY KEY (service, state_key)
);
