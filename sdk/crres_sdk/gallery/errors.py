"""The gallery's error types: one base, :class:`GalleryError` (a ``ValueError``), and a subclass per cause a
caller may want to tell apart (another model, a missing or wrong key, data altered outside the gallery, an old
format opened read-only, an unknown or duplicate identity)."""

from __future__ import annotations


class GalleryError(ValueError):
    """A gallery operation cannot be done: not a gallery, closed, read-only, bad state."""


class GalleryModelMismatch(GalleryError):
    """The gallery (or an export) is bound to a different embedding model than the one given."""


class GalleryKeyError(GalleryError):
    """An encrypted gallery was opened without its key or with the wrong one, or a key is malformed; or a plain
    gallery's integrity key file is missing or belongs to another gallery."""


class GalleryIntegrityError(GalleryError):
    """Stored data fails its integrity check (altered outside the gallery): reads refuse rather than answer."""


class GalleryUpgradeRequired(GalleryError):
    """A gallery of an older format was opened read-only; opening it once with write access upgrades it."""


class UnknownIdentity(GalleryError, KeyError):
    """No identity of that name in the gallery."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class DuplicateIdentity(GalleryError):
    """An identity of that name already exists (rename target, import with ``on_conflict="error"``)."""

