"""The bridge to pynetdicom and the network: held channels, connection hooks, polling, the
C-STORE sender, TLS, connection limits and host name lookups."""
