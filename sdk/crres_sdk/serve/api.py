"""The REST API (FastAPI): identify/verify uploads, gallery management, audit log, cameras, events, unknown faces,
health, Prometheus metrics, and CompreFace's recognition endpoints as Double Take calls them.

Every error is JSON: ``{"error": {"status": 422, "code": "no_face", "message": "..."}}`` (the CompreFace routes
answer in CompreFace's own shape, ``{"message": ..., "code": 28}`` for "no face"). The OpenAPI schema is at
``/openapi.json``. See README "crres serve" for the table of routes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from fastapi import Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from crres_sdk.detector import check_image_size
from crres_sdk.errors import FaceGeometryError, ImageTooLargeError
from crres_sdk.face import Face
from crres_sdk.gallery import DuplicateIdentity, GalleryError, GalleryIntegrityError, UnknownIdentity
from crres_sdk.recognizer import NoFaceError, image_size_from_header

if TYPE_CHECKING:
    from crres_sdk.serve.app import Service

STATIC = Path(__file__).parent / "static"
#: CompreFace's documented "no face is found in the given image" code, which Double Take checks for.
COMPREFACE_NO_FACE = 28
#: The CompreFace endpoint's similarity is the crres score mapped so that the decision threshold at the face's
#: resolution lands here (Double Take's default match confidence is 60 %): similarity >= 0.6 <=> crres "match".
COMPREFACE_THRESHOLD_SIMILARITY = 0.6
MIN_ENROLL_DETECTOR_SCORE = 0.9


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _error(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"status": status, "code": code, "message": message}}, status_code=status,
                        headers=headers)


class BodyLimit:
    """ASGI middleware: refuses request bodies over ``limit`` bytes with 413 (by Content-Length, and by counting
    what arrives for chunked bodies) before any of it is parsed."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        too_big = _error(413, "too_large", f"request body over the {self.limit / 1e6:g} MB limit "
                                           "(api.max_upload_mb)")
        if length is not None:
            try:
                if int(length) > self.limit:
                    return await too_big(scope, receive, send)
            except ValueError:
                return await _error(400, "bad_request", "invalid Content-Length")(scope, receive, send)
        seen = 0
        exceeded = False
        replaced = False

        async def limited_receive() -> dict:
            nonlocal seen, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:  # stop reading; whatever the app answers becomes the 413 below
                    exceeded = True
                    return {"type": "http.disconnect"}
            return message

        async def limited_send(message: dict) -> None:
            nonlocal replaced
            if exceeded:
                if message["type"] == "http.response.start" and not replaced:
                    replaced = True
                    await too_big(scope, receive, send)
                return
            await send(message)

        try:
            await self.app(scope, limited_receive, limited_send)
        except Exception:
            if not exceeded:
                raise
            if not replaced:
                replaced = True
                await too_big(scope, receive, send)


# ---------------------------------------------------------------------------------------------------- helpers


def decode_upload(data: bytes, what: str) -> np.ndarray:
    """A BGR frame from uploaded image bytes; clear errors for empty, oversized or undecodable files."""
    if not data:
        raise ApiError(422, "empty_file", f"{what} is empty")
    size = image_size_from_header(data[:1 << 16])
    try:
        if size is not None:
            check_image_size(size[1], size[0], what)
        frame = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if frame is None:
            raise ApiError(422, "bad_image", f"{what} is not a readable image (JPEG, PNG, BMP, WebP or TIFF)")
        check_image_size(frame.shape[0], frame.shape[1], what)
    except ImageTooLargeError as exc:
        raise ApiError(413, "image_too_large", str(exc)) from None
    return frame


def _read(upload: UploadFile) -> bytes:
    return upload.file.read()


def face_json(face: Face) -> dict:
    cands = face.extra.get("candidates") or []
    return {
        "box": [round(float(v), 1) for v in face.box], "detector_score": round(float(face.score), 4),
        "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in np.asarray(face.landmarks)],
        "equivalent_resolution": round(float(face.equivalent_resolution), 2),
        "effective_resolution": None if face.effective_resolution is None else round(float(face.effective_resolution),
                                                                                      2),
        "probe_resolution": None if face.extra.get("probe_resolution") is None else
        round(float(face.extra["probe_resolution"]), 2),
        "identity": face.identity, "decision": face.decision,
        "score": None if face.match_score is None else round(float(face.match_score), 4),
        "threshold": None if face.extra.get("threshold") is None else round(float(face.extra["threshold"]), 4),
        "candidates": [{"identity": c.identity, "score": round(float(c.score), 4),
                        "template_resolution": round(float(c.template_resolution), 1)} for c in cands],
    }


def compreface_similarity(score: float, threshold: float | None) -> float:
    """crres score -> CompreFace similarity in [0, 1]: piecewise linear, the threshold at
    :data:`COMPREFACE_THRESHOLD_SIMILARITY`; without thresholds the cosine clipped to [0, 1]."""
    s = float(score)
    if threshold is None or not 0 < threshold < 1:
        return round(min(max(s, 0.0), 1.0), 5)
    t, m = float(threshold), COMPREFACE_THRESHOLD_SIMILARITY
    v = m + (1 - m) * (s - t) / (1 - t) if s >= t else m * max(s, 0.0) / t
    return round(min(max(v, 0.0), 1.0), 5)


# ------------------------------------------------------------------------------------------------- the app


def create_api(service: "Service") -> FastAPI:
    cfg = service.cfg.api
    app = FastAPI(title="crres serve", version=service.version,
                  description="Cross-resolution face recognition service: cameras, gallery, events. Authenticate "
                              "with `X-Api-Key: <key>` (or `Authorization: Bearer <key>`).")
    app.add_middleware(BodyLimit, limit=int(cfg.max_upload_mb * 1e6))
    key_hashes = [(k.name, k.sha256) for k in cfg.api_keys]
    write_lock = service.write_lock

    # ---------------------------------------------------------------------------------------------- errors

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        if request.url.path.startswith("/api/v1/"):
            return JSONResponse({"message": exc.message, "code": COMPREFACE_NO_FACE if exc.code == "no_face" else
                                 exc.status}, status_code=exc.status)
        return _error(exc.status, exc.code, exc.message,
                      {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for e in exc.errors():
            where = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
            parts.append(f"{where}: {e.get('msg')}")
        message = "; ".join(parts) or "invalid request"
        if request.url.path.startswith("/api/v1/"):
            return JSONResponse({"message": message, "code": 422}, status_code=422)
        return _error(422, "invalid_request", message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        service.log.exception("unhandled error on %s", request.url.path)
        return _error(500, "internal_error", f"{type(exc).__name__}: {exc}")

    def sdk_errors(fn: Any) -> Any:
        """Map the SDK's exceptions to JSON errors (wraps a sync route)."""
        import functools

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except ApiError:
                raise
            except NoFaceError as exc:
                raise ApiError(422, "no_face", str(exc)) from None
            except UnknownIdentity as exc:
                raise ApiError(404, "unknown_identity", str(exc)) from None
            except DuplicateIdentity as exc:
                raise ApiError(409, "duplicate_identity", str(exc)) from None
            except GalleryIntegrityError as exc:
                raise ApiError(500, "gallery_integrity", str(exc)) from None
            except GalleryError as exc:
                raise ApiError(400, "gallery_error", str(exc)) from None
            except ImageTooLargeError as exc:
                raise ApiError(413, "image_too_large", str(exc)) from None
            except FaceGeometryError as exc:
                raise ApiError(422, "bad_face", str(exc)) from None
            except (ValueError, TypeError) as exc:
                raise ApiError(422, "invalid_value", str(exc)) from None
        return wrapper

    # ------------------------------------------------------------------------------------------------ auth

    def auth(request: Request) -> str | None:
        if not key_hashes:
            return None
        key = request.headers.get("x-api-key")
        if key is None:
            header = request.headers.get("authorization", "")
            if header.lower().startswith("bearer "):
                key = header[7:].strip()
        if not key:
            raise ApiError(401, "unauthorized", "an API key is required: send it as X-Api-Key or "
                                                "Authorization: Bearer")
        digest = "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        who = None
        for name, stored in key_hashes:  # every comparison runs: no timing hint of which key is close
            if hmac.compare_digest(digest, stored):
                who = name
        if who is None:
            raise ApiError(401, "unauthorized", "invalid API key")
        return who

    rec = service.rec
    engine = service.engine

    def gallery():
        if rec.gallery is None:
            raise ApiError(503, "no_gallery", "the service runs without a gallery")
        return rec.gallery

    # ---------------------------------------------------------------------------------------------- service

    @app.get("/api/health", tags=["service"], summary="Liveness and readiness (no key needed)")
    def health() -> dict:
        cams = engine.camera_status()
        return {"status": "ok", "version": service.version, "uptime_s": round(time.time() - service.started, 1),
                "model": f"{rec.bundle.name} {rec.bundle.version}", "backend": rec.backend,
                "cameras": {c["name"]: c["state"] for c in cams},
                "mqtt": service.mqtt.status() if service.mqtt is not None else {"enabled": False},
                "engine_error": engine.last_error}

    @app.get("/metrics", tags=["service"], summary="Prometheus metrics (text format)",
             response_class=PlainTextResponse)
    def metrics(request: Request) -> PlainTextResponse:
        if not cfg.public_metrics:
            auth(request)
        return PlainTextResponse(service.metrics_text(), media_type="text/plain; version=0.0.4")

    @app.get("/api/cameras", tags=["cameras"], summary="Every camera's state, rates and current faces")
    def cameras(_: Any = Depends(auth)) -> list[dict]:
        return engine.camera_status()

    @app.get("/api/cameras/{name}/frame.jpg", tags=["cameras"], response_class=Response,
             summary="The camera's last processed frame with boxes, names and resolution drawn")
    def camera_frame(name: str, _: Any = Depends(auth)) -> Response:
        if name not in engine.cams:
            raise ApiError(404, "unknown_camera", f"no camera {name!r} (configured: {', '.join(engine.cams)})")
        data = engine.live_jpeg(name)
        if data is None:
            raise ApiError(404, "no_frame", f"camera {name!r} has delivered no frame yet")
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @app.get("/api/events", tags=["events"], summary="Recent face-track events (newest last)")
    def events(after: int = Query(0, ge=0), limit: int = Query(100, ge=1, le=1000),
               _: Any = Depends(auth)) -> list[dict]:
        return engine.recent_events(after, limit, with_snapshots=engine.thumbnails)

    # ------------------------------------------------------------------------------------------ recognition

    @app.post("/api/identify", tags=["recognition"], summary="Identify every face in an uploaded image")
    @sdk_errors
    def identify(file: UploadFile = File(...), top_k: int = Query(3, ge=1, le=100), _: Any = Depends(auth)) -> dict:
        frame = decode_upload(_read(file), file.filename or "file")
        faces = rec.identify(frame, top_k=top_k)
        return {"width": frame.shape[1], "height": frame.shape[0], "faces": [face_json(f) for f in faces]}

    @app.post("/api/verify", tags=["recognition"], summary="Are the largest faces of two images the same person?")
    @sdk_errors
    def verify(file_a: UploadFile = File(...), file_b: UploadFile = File(...), _: Any = Depends(auth)) -> dict:
        a = decode_upload(_read(file_a), "file_a")
        b = decode_upload(_read(file_b), "file_b")
        v = rec.verify(a, b)
        return {"score": round(v.score, 4), "threshold": None if v.threshold is None else round(v.threshold, 4),
                "same": v.same, "resolution": round(v.resolution, 2), "faces": [face_json(f) for f in v.faces]}

    # ---------------------------------------------------------------------------------------------- gallery

    def identity_json(info: Any, photos: int | None = None) -> dict:
        return {"name": info.name, "templates": info.n_templates, "resolutions": list(info.resolutions),
                "created": info.created, "updated": info.updated, "metadata": info.metadata,
                "photos": len(photos_of(info.name)) if photos is None else photos}

    def photo_counts() -> dict[str, int]:
        """Photos (distinct source hashes) per identity, in one pass over the gallery's templates."""
        seen: dict[str, set] = {}
        for t in gallery().templates():
            seen.setdefault(t.identity, set()).add(t.source_hash or "unknown")
        return {name: len(hashes) for name, hashes in seen.items()}

    def photos_of(name: str) -> list[dict]:
        """The identity's enrolment photos (the gallery's :meth:`Gallery.photos`, by source hash)."""
        return [{"id": p.source_hash or "unknown", "templates": p.n_templates, "resolution": round(p.resolution, 1),
                 "created": p.created} for p in gallery().photos(name)]

    def check_enrolment_face(frame: np.ndarray, what: str) -> Face:
        """The quality check of an enrolment photo: one clear face, large and sharp enough."""
        faces = rec.detect(frame)
        if not faces:
            raise ApiError(422, "no_face", f"no face found in {what}")
        face = max(faces, key=lambda f: f.width * f.height)
        r = rec.probe_resolution(face)
        need = service.cfg.recognition.min_enroll_resolution
        if r < need:
            raise ApiError(422, "low_quality", f"{what}: the face carries {r:.0f} px of resolution (size "
                                               f"{face.equivalent_resolution:.0f} px, measured sharpness "
                                               f"{face.effective_resolution or 0:.0f} px); enrolment needs at least "
                                               f"{need:g} px (recognition.min_enroll_resolution): use a larger, "
                                               "sharper photo")
        if face.score < MIN_ENROLL_DETECTOR_SCORE:
            raise ApiError(422, "low_quality", f"{what}: the detector is only {face.score:.2f} sure this is a face "
                                               f"(enrolment needs {MIN_ENROLL_DETECTOR_SCORE})")
        return face

    def enrol(name: str, files: list[UploadFile], create: bool, metadata: dict | None = None) -> dict:
        if not files:
            raise ApiError(422, "no_file", "send one or more image files as 'file'")
        frames, faces = [], []
        for i, f in enumerate(files):
            what = f.filename or f"file {i + 1}"
            frame = decode_upload(_read(f), what)
            frames.append(frame)
            faces.append(check_enrolment_face(frame, what))
        g = gallery()
        with write_lock:
            exists = name in g
            if create and exists:
                raise ApiError(409, "duplicate_identity", f"identity {name!r} already exists: add photos with "
                                                          f"POST /api/identities/{name}/photos")
            if not create and not exists:
                raise ApiError(404, "unknown_identity", f"no identity {name!r}")
            n = rec.enroll(name, frames, faces=faces, metadata=metadata)
        service.log.info("enrolled %r: %d photo(s), %d templates", name, len(frames), n)
        return {"name": name, "photos_added": len(frames), "templates_added": n,
                "resolutions": [round(rec.probe_resolution(f), 1) for f in faces]}

    @app.get("/api/identities", tags=["gallery"], summary="List or search the gallery's identities")
    @sdk_errors
    def identities(search: str | None = Query(None, max_length=200), _: Any = Depends(auth)) -> list[dict]:
        infos = gallery().identities()
        if search:
            s = search.casefold()
            infos = [i for i in infos if s in i.name.casefold()]
        counts = photo_counts() if infos else {}
        return [identity_json(i, counts.get(i.name, 0)) for i in infos]

    @app.post("/api/identities", tags=["gallery"], status_code=201,
              summary="Enrol a new identity from one or more photos (quality-checked)")
    @sdk_errors
    def create_identity(name: str = Form(..., max_length=200), file: list[UploadFile] = File(...),
                        metadata: str | None = Form(None, max_length=10000), _: Any = Depends(auth)) -> dict:
        meta = None
        if metadata:
            try:
                meta = json.loads(metadata)
            except json.JSONDecodeError as exc:
                raise ApiError(422, "invalid_value", f"metadata must be a JSON object: {exc}") from None
        return enrol(name, file, create=True, metadata=meta)

    @app.get("/api/identities/{name}", tags=["gallery"], summary="One identity with its photos")
    @sdk_errors
    def get_identity(name: str, _: Any = Depends(auth)) -> dict:
        info = gallery().get(name)
        return {**identity_json(info), "photo_list": photos_of(name)}

    @app.post("/api/identities/{name}/photos", tags=["gallery"], status_code=201,
              summary="Add photos to an identity (quality-checked)")
    @sdk_errors
    def add_photos(name: str, file: list[UploadFile] = File(...), _: Any = Depends(auth)) -> dict:
        return enrol(name, file, create=False)

    @app.delete("/api/identities/{name}", tags=["gallery"], summary="Remove an identity and all its templates")
    @sdk_errors
    def remove_identity(name: str, _: Any = Depends(auth)) -> dict:
        with write_lock:
            n = gallery().remove(name)
        return {"name": name, "templates_removed": n}

    @app.patch("/api/identities/{name}", tags=["gallery"], summary="Rename an identity")
    @sdk_errors
    def rename_identity(name: str, new_name: str = Form(..., max_length=200), _: Any = Depends(auth)) -> dict:
        with write_lock:
            gallery().rename(name, new_name)
        return {"name": new_name, "previous": name}

    @app.delete("/api/identities/{name}/photos/{photo}", tags=["gallery"],
                summary="Remove one photo's templates from an identity")
    @sdk_errors
    def remove_photo(name: str, photo: str, _: Any = Depends(auth)) -> dict:
        g = gallery()
        with write_lock:
            photos = [p["id"] for p in photos_of(name)]
            hits = [h for h in photos if h.startswith(photo.lower())] if len(photo) >= 8 else []
            if len(hits) != 1:
                raise ApiError(404, "unknown_photo", f"identity {name!r} has no photo {photo!r}" if not hits else
                               f"{photo!r} matches {len(hits)} photos of {name!r}: give more of the hash")
            if len(photos) == 1:
                raise ApiError(409, "last_photo", f"{photo!r} is {name!r}'s only photo: remove the identity "
                                                  f"instead (DELETE /api/identities/{name})")
            n = g.remove_photo(name, hits[0])  # one transaction with its audit row; the WAL is purged
        return {"name": name, "photo": hits[0], "templates_removed": n}

    @app.get("/api/audit", tags=["gallery"], summary="The gallery's audit log (newest first)")
    @sdk_errors
    def audit(limit: int = Query(200, ge=1, le=10000), _: Any = Depends(auth)) -> list[dict]:
        rows = gallery().audit_log()
        return [{"time": e.time, "action": e.action, "identity": e.identity, "count": e.count, "detail": e.detail}
                for e in reversed(rows[-limit:])]

    # ---------------------------------------------------------------------------------------- unknown faces

    @app.get("/api/unknown", tags=["unknown"], summary="Unknown people seen by the cameras, grouped for labelling")
    def unknown(_: Any = Depends(auth)) -> dict:
        return {"thumbnails": engine.thumbnails, "groups": engine.unknown_groups()}

    @app.get("/api/unknown/{gid}/crops/{index}.jpg", tags=["unknown"], response_class=Response,
             summary="An unknown group's face crop (only where the gallery allows face images)")
    def unknown_crop(gid: str, index: int, _: Any = Depends(auth)) -> Response:
        if not engine.thumbnails:
            raise ApiError(403, "thumbnails_off", "this gallery does not allow face images (gallery.thumbnails)")
        data = engine.unknown_crop(gid, index)
        if data is None:
            raise ApiError(404, "not_found", f"no crop {index} in unknown group {gid!r}")
        return Response(data, media_type="image/jpeg")

    @app.post("/api/unknown/{gid}/enroll", tags=["unknown"], status_code=201,
              summary="Enrol an unknown group under a name, from its best face crops")
    @sdk_errors
    def enroll_unknown(gid: str, name: str = Form(..., max_length=200), _: Any = Depends(auth)) -> dict:
        group = engine.take_unknown(gid)
        if group is None:
            raise ApiError(404, "not_found", f"no unknown group {gid!r}")
        regions = [r for r in group.regions]
        with write_lock:
            n = rec.enroll(name, [reg for _, reg, _ in regions], faces=[marks for _, _, marks in regions])
        engine.drop_unknown(gid)
        return {"name": name, "templates_added": n, "crops": len(regions)}

    @app.delete("/api/unknown/{gid}", tags=["unknown"], summary="Dismiss an unknown group")
    def dismiss_unknown(gid: str, _: Any = Depends(auth)) -> dict:
        if not engine.drop_unknown(gid):
            raise ApiError(404, "not_found", f"no unknown group {gid!r}")
        return {"dismissed": gid}

    # ----------------------------------------------------------------------------------- CompreFace routes

    @app.post("/api/v1/recognition/recognize", tags=["compreface"],
              summary="CompreFace-compatible recognition (as Double Take calls it)")
    @sdk_errors
    def cf_recognize(file: UploadFile = File(...), limit: int = Query(0, ge=0),
                     det_prob_threshold: float = Query(0.0, ge=0.0, le=1.0), prediction_count: int = Query(1, ge=1),
                     face_plugins: str | None = Query(None), status: bool = Query(False),
                     _: Any = Depends(auth)) -> dict:
        t0 = time.monotonic()
        frame = decode_upload(_read(file), file.filename or "file")
        faces = [f for f in rec.identify(frame, top_k=prediction_count) if f.score >= det_prob_threshold]
        if not faces:
            raise ApiError(400, "no_face", "No face is found in the given image")
        faces.sort(key=lambda f: -(f.match_score or -1.0))
        if limit:
            faces = faces[:limit]
        result = []
        for f in faces:
            x1, y1, x2, y2 = (int(round(float(v))) for v in f.box)
            t = f.extra.get("threshold")
            item = {"box": {"probability": round(float(f.score), 5), "x_max": x2, "y_max": y2, "x_min": x1,
                            "y_min": y1},
                    "subjects": [{"subject": c.identity, "similarity": compreface_similarity(c.score, t)}
                                 for c in f.extra.get("candidates", [])],
                    "landmarks": [[int(round(float(x))), int(round(float(y)))] for x, y in f.landmarks],
                    "crres": {"identity": f.identity, "decision": f.decision,
                              "score": None if f.match_score is None else round(float(f.match_score), 4),
                              "threshold": None if t is None else round(float(t), 4),
                              "probe_resolution": round(float(f.extra.get("probe_resolution", 0.0)), 2)}}
            if status:
                item["execution_time"] = {"detector": round((time.monotonic() - t0) * 1000, 1)}
            result.append(item)
        return {"result": result}

    @app.post("/api/v1/recognition/faces", tags=["compreface"], status_code=201,
              summary="CompreFace-compatible: add an example (photo) of a subject")
    @sdk_errors
    def cf_add(subject: str = Query(..., max_length=200), file: UploadFile = File(...),
               det_prob_threshold: float = Query(0.0, ge=0.0, le=1.0), _: Any = Depends(auth)) -> dict:
        frame = decode_upload(_read(file), file.filename or "file")
        face = check_enrolment_face(frame, file.filename or "file")
        with write_lock:
            rec.enroll(subject, [frame], faces=[face])
        digest = hashlib.sha256(np.ascontiguousarray(frame).tobytes()).hexdigest()
        return {"image_id": digest, "subject": subject}

    @app.delete("/api/v1/recognition/faces", tags=["compreface"],
                summary="CompreFace-compatible: delete all examples of a subject")
    @sdk_errors
    def cf_delete(subject: str = Query(..., max_length=200), _: Any = Depends(auth)) -> list[dict]:
        g = gallery()
        with write_lock:
            photos = photos_of(subject) if subject in g else []
            if photos:
                g.remove(subject)
        return [{"image_id": p["id"], "subject": subject} for p in photos]

    @app.get("/api/v1/recognition/subjects", tags=["compreface"], summary="CompreFace-compatible: list subjects")
    @sdk_errors
    def cf_subjects(_: Any = Depends(auth)) -> dict:
        return {"subjects": list(gallery())}

    # ------------------------------------------------------------------------------------------------ page

    if cfg.page:
        app.mount("/static", StaticFiles(directory=STATIC), name="static")

        @app.get("/", include_in_schema=False)
        def page() -> FileResponse:
            return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/api/config", tags=["service"], summary="What the page needs: cameras, thresholds policy, limits")
    def page_config(_: Any = Depends(auth)) -> dict:
        return {"cameras": list(engine.cams), "far": rec.far, "fpir": getattr(rec, "fpir", None),
                "thumbnails": engine.thumbnails,
                "min_enroll_resolution": service.cfg.recognition.min_enroll_resolution,
                "max_upload_mb": cfg.max_upload_mb, "auth": bool(key_hashes)}

    app.state.service = service
    return app
