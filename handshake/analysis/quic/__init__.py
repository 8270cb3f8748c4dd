"""QUIC: packets, frames, protection, the TLS inside CRYPTO frames, flows, rounds and the verdict."""
