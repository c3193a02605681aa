"""``dedupd review``: a local web page to look at duplicate groups and decide about them.

:mod:`.server` serves the page (``page.html``/``page.js``/``page.css``, package data) on
127.0.0.1 with a random token, and turns the page's decisions into requests on the daemon's
socket (:mod:`dedupd.client`), so the page can do exactly what the caller may do there.
"""
