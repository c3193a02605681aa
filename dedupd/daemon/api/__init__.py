"""The daemon's socket API: HTTP/1.1 over a Unix socket (:mod:`.transport`) serving the routes of
:mod:`.routes`, which read the daemon through a small read-only view."""
