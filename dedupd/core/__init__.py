"""The pure layer: algorithms, search and decisions over arrays and ints.

Nothing here opens files, sockets or databases, sleeps, or configures logging. Both the library
façade (``dedupd.methods``) and the daemon call into it.
"""
