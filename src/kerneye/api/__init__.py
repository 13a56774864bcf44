"""Local API on a root-only Unix socket: JSON-lines requests and streams."""
