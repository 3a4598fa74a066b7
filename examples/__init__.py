"""Example jobs for jobs.example.toml."""
