"""The job database: one small interface (:class:`~api.db.connection.Database`), two
implementations (SQLite in the data directory, the default; PostgreSQL shared by replicas and
workers), and versioned schema migrations run at start. Knows nothing of what a job is."""
