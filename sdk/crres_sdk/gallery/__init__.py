"""Resolution-aware face gallery (DESIGN section 4): SQLite (WAL) bound to one embedding model.

A gallery holds identities and their templates: L2-normalised float32 vectors, each with the resolution (px) of
the face it was made from and a source hash. Enrolment stores the template of the high-resolution crop *and* of
degraded versions of it (gallery-side resolution matching, after the meet-in-the-middle paper); a probe of
resolution ``r`` is then compared, for every identity, only with that identity's templates at the *resolution
level* nearest ``r`` in log-resolution, and the identity's scores there are fused (``"max"`` = S_max, the default
after Grm et al. Table 3, or ``"add"`` = S_add, their mean)::

    from crres_sdk.gallery import Gallery, ModelKey

    with Gallery("people.db", ModelKey("crres-mfn", "1.0", 512)) as g:
        g.enroll("alice", templates, resolutions=[112, 28, 14, 7], source_hashes=[h, h, h, h])
        matches = g.search(probes, probe_resolutions=[9.5, 40.0], top_k=5)   # list (per probe) of Match

Resolution levels
    A template's level is its resolution rounded to whole pixels and capped at 112 (the canonical crop: a face
    seen larger than 112 px carries the information of a 112 px crop). For a probe at ``r`` each identity's
    level is the one of *its* levels nearest ``r`` in ``|log level - log r|`` (ties go to the higher level), so an
    identity enrolled without some degraded level still competes. ``match="all"`` compares with every template.

Integrity and privacy
    * Every write (enrol, remove, rename, import, re-embed) is one ``BEGIN IMMEDIATE`` transaction together with
      its audit row: no partial enrolment is ever visible and a crash loses at most the write in flight
      (``synchronous=FULL``: a committed enrolment also survives power loss).
    * No face images are stored unless the gallery is created with ``thumbnails=True`` (then one encoded image
      per source, e.g. the aligned HR crop as PNG, so the gallery can be re-embedded for a new model).
    * ``PRAGMA secure_delete=ON`` on every connection, and a WAL checkpoint (TRUNCATE) after ``remove``: the
      removed vectors are overwritten in the database file and the WAL no longer holds old copies.
    * Integrity key (every gallery, encrypted or not): a keyed MAC (HMAC-SHA256) binds every template to its
      vector, template id, identity id, identity *name*, resolution and source hash; every identity row to its
      name, metadata and creation time; every thumbnail to its identity. Templates are also checked finite and
      L2-normalised when read. Any edit made outside the gallery (bytes flipped, rows moved to another identity,
      names swapped, a resolution changed, a template scaled or set to NaN) makes reads raise
      :class:`GalleryIntegrityError` instead of changing answers. A plain gallery's 32-byte key is created with
      it in ``<gallery>.integrity-key`` (owner-only; or ``integrity_key_file=``): copy it with the gallery, and
      keep it where the database's editors cannot write if they are not trusted. An encrypted gallery derives it
      from the encryption key.
    * Optional at-rest encryption (``key=``/``key_file=``/``key_env=``; 32-byte AES-256-GCM key, needs
      ``pip install 'crres[crypto]'``): template vectors, thumbnails and metadata are sealed with a fresh 12-byte
      nonce each; the associated data binds a template to its identity id, identity name, template id and
      resolution (metadata to its identity id and name), so rows cannot be swapped or relabelled, nor two names
      swapped, without failing authentication. Identity names and the audit log stay in clear (names are the
      lookup key); opening an encrypted gallery without the right key fails at open.
    * The audit table is append-only (SQLite triggers ``RAISE(ABORT)`` on ``UPDATE``/``DELETE``) and chained
      with the integrity key (HMAC), so it cannot be recomputed after an edit. Every write also stores a keyed
      *head*: the last audit row and a keyed digest of the set of identity, template and thumbnail rows, so a
      truncated audit log and rows added or deleted by raw SQL are seen. :meth:`Gallery.check` verifies all of
      it and returns the problems (it never raises). What no file-level check can see: the whole gallery rolled
      back to an older copy of itself together with its key. Cost: the first search after a write verifies every
      row, and every write computes its MACs (``benchmarks/bench_gallery.py``, case ``gallery_db``, measures both);
      searches between writes are unchanged (the verified index is cached).
    * Galleries of the previous format (``crres-gallery/1``, no integrity key) are upgraded in place when
      opened with write access (checked first: audit chain, sealed rows, finite unit templates; audited as
      ``upgrade``); a read-only open asks for that (:class:`GalleryUpgradeRequired`).

Concurrency
    One writer and many readers, across threads and processes: writes go through one connection under a lock
    (and SQLite's own write lock across processes); searches borrow a reader connection from a pool, so they run
    while an enrolment is in progress and see the last committed state. The search matrix is cached in memory
    and rebuilt when the gallery's generation counter (bumped by every write, from any process) changes.

Search backends
    numpy BLAS by default. With ``faiss-cpu`` installed (``pip install 'crres[faiss]'``) ``backend="auto"`` uses
    a FAISS ``IndexFlatIP`` per resolution level for S_max for batches of at least :data:`FAISS_MIN_PROBES`
    probes once a level holds :data:`FAISS_MIN_TEMPLATES` templates (where ``benchmarks/bench_gallery.py``
    measured it to pay). Both are exact; S_add always uses numpy (a top-k template search cannot bound a mean).

Exports are themselves gallery files (a consistent SQLite snapshot made with the backup API) that keep the model
key; :meth:`Gallery.import_` refuses an export of another model. An encrypted gallery exports ciphertext unless
``decrypt=True`` is passed explicitly.

Layout
    :mod:`~crres_sdk.gallery.core` holds :class:`Gallery`, built on three base classes that share its state:
    :mod:`~crres_sdk.gallery.store` (schema, connections, transactions, opening, upgrading),
    :mod:`~crres_sdk.gallery.rows` (sealed and MACed rows, the row digest, audit rows) and
    :mod:`~crres_sdk.gallery.transfer` (re-embed, export, import). Beneath them, with no gallery state:
    :mod:`~crres_sdk.gallery.keys` (AES-GCM, MACs, key files), :mod:`~crres_sdk.gallery.index` (the in-memory and
    FAISS search), :mod:`~crres_sdk.gallery.validate` (checks on names, vectors and arguments),
    :mod:`~crres_sdk.gallery.records` (format names, :class:`ModelKey` and the records reads return) and
    :mod:`~crres_sdk.gallery.errors`. Everything public is imported here: use ``crres_sdk.gallery``.
"""

from crres_sdk.gallery.core import Gallery
from crres_sdk.gallery.errors import (
    DuplicateIdentity,
    GalleryError,
    GalleryIntegrityError,
    GalleryKeyError,
    GalleryModelMismatch,
    GalleryUpgradeRequired,
    UnknownIdentity,
)
from crres_sdk.gallery.index import FAISS_MIN_PROBES, FAISS_MIN_TEMPLATES, _Index, auto_backend
from crres_sdk.gallery.keys import INTEGRITY_KEY_SUFFIX, generate_key, write_key_file
from crres_sdk.gallery.records import (
    FORMAT,
    FORMAT_V1,
    AuditEntry,
    IdentityInfo,
    Match,
    ModelKey,
    PhotoInfo,
    SourceImage,
    TemplateRecord,
    resolution_level,
)
from crres_sdk.gallery.validate import NORM_TOLERANCE

# FORMAT_V1, INTEGRITY_KEY_SUFFIX, NORM_TOLERANCE and _Index stay importable from here (tests and
# benchmarks/bench_gallery.py use them) without being part of the public list.
__all__ = [
    "FORMAT",
    "FAISS_MIN_PROBES",
    "FAISS_MIN_TEMPLATES",
    "AuditEntry",
    "DuplicateIdentity",
    "Gallery",
    "GalleryError",
    "GalleryIntegrityError",
    "GalleryKeyError",
    "GalleryUpgradeRequired",
    "GalleryModelMismatch",
    "IdentityInfo",
    "Match",
    "ModelKey",
    "PhotoInfo",
    "SourceImage",
    "TemplateRecord",
    "UnknownIdentity",
    "auto_backend",
    "generate_key",
    "resolution_level",
    "write_key_file",
]
