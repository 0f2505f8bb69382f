"""The per-storage-area index: schema and SQLite backend."""
