"""The one exception tree of dedupd. Every message names the file or setting and what to do."""

from __future__ import annotations


class DedupdError(Exception):
    """Base class of every error dedupd raises on purpose."""


class ConfigError(DedupdError, ValueError):
    """The configuration is invalid; the message lists every problem found."""


#: The reference's message when ``encode_image`` is given neither an existing file nor an array.
NO_IMAGE_INPUT = "Please provide either image file path or image array!"


class ImageArrayError(DedupdError, ValueError, AssertionError):
    """An in-memory image array of the wrong shape (imagededup raised ``ValueError`` or, for a wrong
    channel count, ``AssertionError``: this is both)."""


class ArgumentTypeError(DedupdError, TypeError, AttributeError):
    """An argument of the wrong type for the imagededup-compatible API; the message names it.

    Where imagededup failed on such an argument by accident (``AttributeError`` from a missing
    method, or ``TypeError``), this is both, so callers catching either keep working.
    """


class ImageDecodeError(DedupdError):
    """A file could not be decoded as a supported image.

    Attributes:
        path: the file (str), or ``"<array>"`` for in-memory input.
        reason: short human-readable cause (``"truncated image"``, ``"unsupported format GIF"``...).
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot decode {path}: {reason}")
        self.path = path
        self.reason = reason


class ImageTooLargeError(ImageDecodeError):
    """An image above the configured pixel limit (the daemon's ``max_pixels``): refused undecoded."""


class StoreError(DedupdError):
    """The LMDB store cannot be opened or has an incompatible layout."""


class StoreWriteError(StoreError):
    """A write to the store failed (full disk, I/O error); nothing of it was written.

    Attributes:
        transient: the cause lies outside dedupd (space, I/O), so the same write may succeed later.
    """

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class ModelUnavailableError(DedupdError):
    """CNN weights or torch are missing; the message says how to provide them."""


class ProtocolError(DedupdError):
    """A socket request or response does not follow the protocol."""
