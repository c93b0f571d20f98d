//! The event store: SQLite or PostgreSQL behind cqrs-es, and command execution with retries.
