"""TLS: records, handshake messages, keys from a key log, and the conversation that ties them together."""
