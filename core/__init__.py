"""Project-level pages and plumbing: home page, health check, error contract, launcher."""
