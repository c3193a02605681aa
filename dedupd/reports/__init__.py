"""Duplicate reports, shared by the daemon and the CLI: groups, JSON files, the HTML page, thumbnails."""
