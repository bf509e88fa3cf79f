"""crres serve's REST API over real HTTP on loopback: auth, errors, gallery management, recognition, the
CompreFace-compatible endpoint, cameras and metrics."""

from __future__ import annotations

import http.client as http_client
import json
import time

import cv2
import numpy as np

from tests.serve.conftest import png

ASTRONAUT = "astronaut"


def ensure_enrolled(svc, photo) -> None:
    """The session gallery holds the astronaut under ASTRONAUT and no other copy of her."""
    status, ids = svc.http.request("GET", "/api/identities")
    assert status == 200, ids
    for p in ids:
        if p["name"] != ASTRONAUT:
            svc.http.request("DELETE", f"/api/identities/{p['name']}")
    if ASTRONAUT not in [p["name"] for p in ids]:
        status, body = svc.http.request("POST", "/api/identities", fields={"name": ASTRONAUT},
                                        files=[("file", "astronaut.png", png(photo))])
        assert status == 201, body


def test_health_openapi_and_keys(service):
    http = service.http
    status, body = http.request("GET", "/api/health", key=None)
    assert status == 200 and body["status"] == "ok" and body["cameras"] == {"door": body["cameras"]["door"]}
    status, body = http.request("GET", "/api/cameras", key=None)
    assert status == 401 and body["error"]["code"] == "unauthorized" and "X-Api-Key" in body["error"]["message"]
    status, body = http.request("GET", "/api/cameras", key="wrong")
    assert status == 401 and body["error"]["message"] == "invalid API key"
    status, body = http.request("GET", "/api/cameras", key=None, headers={"Authorization": f"Bearer {http.key}"})
    assert status == 200 and body[0]["name"] == "door"
    status, schema = http.request("GET", "/openapi.json", key=None)
    assert status == 200
    for path in ("/api/identify", "/api/verify", "/api/identities", "/api/identities/{name}/photos/{photo}",
                 "/api/audit", "/api/cameras", "/api/events", "/api/unknown", "/api/v1/recognition/recognize"):
        assert path in schema["paths"], path
    status, body = http.request("GET", "/api/nothing-here")
    assert status == 404 and body["error"]["code"] == "not_found"


def test_bad_uploads_get_clear_json_errors(service, demo):
    http = service.http
    photo = demo[1]
    cases = [
        ([("file", "empty.png", b"")], 422, "empty_file"),
        ([("file", "notes.txt", b"this is not an image")], 422, "bad_image"),
        ([("file", "noise.png", png(np.random.default_rng(0).integers(0, 255, (200, 200, 3), np.uint8)))], 422,
         "no_face"),
        # her face shrunk to ~20 px: detected, but refused by the enrolment quality check
        ([("file", "tiny.png", png(cv2.resize(photo, (96, 96), interpolation=cv2.INTER_AREA)))], 422, "low_quality"),
    ]
    for files, code, kind in cases:
        status, body = http.request("POST", "/api/identities", fields={"name": "someone"}, files=files)
        assert (status, body["error"]["code"]) == (code, kind), body
        assert body["error"]["message"]
    status, body = http.request("POST", "/api/identities", files=[("file", "a.png", png(photo))])
    assert status == 422 and "name" in body["error"]["message"]
    # over api.max_upload_mb (2 MB): refused from the Content-Length header, before the body is read
    conn = http_client.HTTPConnection(http.base.split("//")[1], timeout=30)
    conn.putrequest("POST", "/api/identify")
    conn.putheader("X-Api-Key", http.key)
    conn.putheader("Content-Type", "multipart/form-data; boundary=x")
    conn.putheader("Content-Length", str(3_000_000))
    conn.endheaders()
    reply = conn.getresponse()
    body = json.loads(reply.read())
    conn.close()
    assert reply.status == 413 and body["error"]["code"] == "too_large" and "2 MB" in body["error"]["message"]
    # ... and a chunked body (no length) is cut off once it passes the limit
    conn = http_client.HTTPConnection(http.base.split("//")[1], timeout=30)
    head = b'--x\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n\r\n'
    chunks = (head if i == 0 else b"x" * 65536 for i in range(65))  # a 4 MB file part
    try:
        conn.request("POST", "/api/identify", body=chunks, encode_chunked=True,
                     headers={"X-Api-Key": http.key, "Content-Type": "multipart/form-data; boundary=x"})
        reply = conn.getresponse()
        status, body = reply.status, json.loads(reply.read())
        assert status == 413 and body["error"]["code"] == "too_large"
    except (ConnectionResetError, BrokenPipeError):
        pass  # the server answered and closed while the client was still sending: also refused
    finally:
        conn.close()
    status, body = http.request("POST", "/api/identify", fields={"top_k": "3"})
    assert status == 422 and body["error"]["code"] == "invalid_request" and "file" in body["error"]["message"]
    status, ids = http.request("GET", "/api/identities?search=someone")
    assert status == 200 and ids == []  # nothing was written by any refused request


def test_gallery_management(service, demo):
    http = service.http
    photo = demo[1]
    name = "crud-person"
    status, body = http.request("POST", "/api/identities", fields={"name": name, "metadata": '{"team": "a"}'},
                                files=[("file", "a.png", png(photo))])
    assert status == 201 and body["photos_added"] == 1 and body["templates_added"] > 1, body
    status, body = http.request("POST", "/api/identities", fields={"name": name},
                                files=[("file", "a.png", png(photo))])
    assert status == 409 and body["error"]["code"] == "duplicate_identity"
    status, body = http.request("POST", f"/api/identities/{name}/photos",
                                files=[("file", "flipped.png", png(photo[:, ::-1].copy()))])
    assert status == 201 and body["photos_added"] == 1
    status, body = http.request("POST", "/api/identities/nobody/photos", files=[("file", "a.png", png(photo))])
    assert status == 404
    status, info = http.request("GET", f"/api/identities/{name}")
    assert status == 200 and info["photos"] == 2 and info["metadata"] == {"team": "a"}
    status, found = http.request("GET", "/api/identities?search=CRUD")
    assert [p["name"] for p in found] == [name]
    status, body = http.request("PATCH", f"/api/identities/{name}", fields={"new_name": "renamed-person"})
    assert status == 200 and body["name"] == "renamed-person"
    name = "renamed-person"
    status, body = http.request("PATCH", f"/api/identities/{name}", fields={"new_name": "bad\u202ename"})
    assert status == 422 and "U+202E" in body["error"]["message"]
    photo_id = info["photo_list"][0]["id"]
    status, body = http.request("DELETE", f"/api/identities/{name}/photos/{photo_id}")
    assert status == 200 and body["templates_removed"] == info["photo_list"][0]["templates"]
    status, info2 = http.request("GET", f"/api/identities/{name}")
    assert info2["photos"] == 1 and info2["metadata"] == {"team": "a"}
    status, body = http.request("DELETE", f"/api/identities/{name}/photos/{info2['photo_list'][0]['id']}")
    assert status == 409 and body["error"]["code"] == "last_photo"
    status, body = http.request("DELETE", f"/api/identities/{name}/photos/feedbeef")
    assert status == 404
    status, audit = http.request("GET", "/api/audit?limit=20")
    actions = [(e["action"], e["identity"]) for e in audit]
    assert ("rename", "crud-person") in actions and ("enroll", "crud-person") in actions
    assert audit[0]["time"] >= audit[-1]["time"]  # newest first
    status, body = http.request("DELETE", f"/api/identities/{name}")
    assert status == 200 and body["templates_removed"] > 0
    status, body = http.request("DELETE", f"/api/identities/{name}")
    assert status == 404 and body["error"]["code"] == "unknown_identity"


def test_identify_verify_and_compreface(service, demo):
    http = service.http
    photo = demo[1]
    ensure_enrolled(service, photo)
    status, body = http.request("POST", "/api/identify", files=[("file", "a.jpg", cv2.imencode(".jpg", photo)[1]
                                                                 .tobytes())])
    assert status == 200 and body["width"] == photo.shape[1]
    face = max(body["faces"], key=lambda f: f["box"][2] - f["box"][0])
    assert face["identity"] == ASTRONAUT and face["decision"] == "match" and face["score"] > face["threshold"]
    assert face["probe_resolution"] > 40 and len(face["landmarks"]) == 5
    status, body = http.request("POST", "/api/verify", files=[("file_a", "a.png", png(photo)),
                                                              ("file_b", "b.png", png(photo[:, ::-1].copy()))])
    assert status == 200 and body["same"] is True and body["score"] > body["threshold"]

    # CompreFace, as Double Take calls it: multipart 'file', x-api-key, det_prob_threshold=0.8
    status, body = http.request("POST", "/api/v1/recognition/recognize?det_prob_threshold=0.8",
                                files=[("file", "frigate.jpg", png(photo))])
    assert status == 200, body
    best = body["result"][0]
    assert set(best["box"]) == {"probability", "x_max", "y_max", "x_min", "y_min"}
    assert best["box"]["x_max"] > best["box"]["x_min"] and best["box"]["probability"] >= 0.8
    assert best["subjects"][0]["subject"] == ASTRONAUT and 0.6 <= best["subjects"][0]["similarity"] <= 1.0
    noise = np.random.default_rng(2).integers(0, 255, (160, 160, 3), np.uint8)
    status, body = http.request("POST", "/api/v1/recognition/recognize", files=[("file", "n.png", png(noise))])
    assert status == 400 and body["code"] == 28  # Double Take reads code 28 as "no face"
    status, body = http.request("POST", "/api/v1/recognition/recognize", files=[("file", "a.png", png(photo))],
                                key="wrong")
    assert status == 401
    status, body = http.request("POST", "/api/v1/recognition/faces?subject=cf-person",
                                files=[("file", "a.png", png(photo))])
    assert status == 201 and body["subject"] == "cf-person" and len(body["image_id"]) == 64
    status, body = http.request("GET", "/api/v1/recognition/subjects")
    assert "cf-person" in body["subjects"]
    status, body = http.request("DELETE", "/api/v1/recognition/faces?subject=cf-person")
    assert status == 200 and body[0]["subject"] == "cf-person"


def test_cameras_live_view_and_metrics(service):
    http = service.http
    deadline = time.monotonic() + 60
    cams = []
    while time.monotonic() < deadline:
        status, cams = http.request("GET", "/api/cameras")
        if cams[0]["state"] == "streaming" and cams[0]["processed_frames"] > 0:
            break
        time.sleep(0.2)
    door = cams[0]
    assert door["state"] == "streaming" and door["width"] == 640 and door["height"] == 480
    status, jpg = http.request("GET", "/api/cameras/door/frame.jpg")
    assert status == 200
    frame = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR)
    assert frame.shape == (480, 640, 3)
    status, body = http.request("GET", "/api/cameras/attic/frame.jpg")
    assert status == 404 and body["error"]["code"] == "unknown_camera"
    status, text = http.request("GET", "/metrics", key=None)
    text = text.decode()
    assert status == 200 and "# TYPE crres_camera_frames_processed_total counter" in text
    assert 'crres_camera_up{camera="door"} 1' in text
    processed = [line for line in text.splitlines() if line.startswith("crres_camera_frames_processed_total")]
    assert int(float(processed[0].split()[-1])) >= 1


def test_unknown_person_is_grouped_and_enrolled_from_her_crops(service, demo):
    http = service.http
    status, ids = http.request("GET", "/api/identities")
    for p in ids:  # nobody enrolled: she passes as unknown
        http.request("DELETE", f"/api/identities/{p['name']}")
    deadline = time.monotonic() + 60
    groups = []
    while time.monotonic() < deadline:
        status, body = http.request("GET", "/api/unknown")
        groups = body["groups"]
        if groups:
            break
        time.sleep(0.5)
    assert groups, "no unknown group formed within 60 s"
    assert body["thumbnails"] is True
    g = groups[0]
    assert g["cameras"] == ["door"] and g["tracks"] >= 1 and 1 <= g["crops"] <= 3 and g["resolution"] > 20
    status, jpg = http.request("GET", f"/api/unknown/{g['id']}/crops/0.jpg")
    assert status == 200 and cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR).shape == (112, 112, 3)
    status, body = http.request("POST", f"/api/unknown/{g['id']}/enroll", fields={"name": "from-unknown"})
    assert status == 201 and body["templates_added"] > 0, body
    status, body = http.request("GET", "/api/unknown")
    assert g["id"] not in [x["id"] for x in body["groups"]]
    status, body = http.request("POST", "/api/identify", files=[("file", "a.png", png(demo[1]))])
    face = max(body["faces"], key=lambda f: f["box"][2] - f["box"][0])
    assert face["identity"] == "from-unknown", face  # enrolled from the camera's crops, she is named in a photo
    http.request("DELETE", "/api/identities/from-unknown")


def test_giant_image_header_is_refused_before_decoding(service):
    import struct
    import zlib

    ihdr = struct.pack(">II", 30000, 30000) + b"\x08\x02\x00\x00\x00"
    fake = (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
            + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + b"\x00" * 64)
    status, body = service.http.request("POST", "/api/identify", files=[("file", "giant.png", fake)])
    assert status == 413 and body["error"]["code"] == "image_too_large" and "30000" in body["error"]["message"]


def test_concurrent_enrolments_are_all_kept(service, demo):
    from concurrent.futures import ThreadPoolExecutor

    http = service.http
    data = png(demo[1])
    names = [f"concurrent-{i}" for i in range(4)]

    def enrol(name):
        return http.request("POST", "/api/identities", fields={"name": name}, files=[("file", "a.png", data)])

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(enrol, names))
    assert [s for s, _ in results] == [201] * 4, results
    status, listed = http.request("GET", "/api/identities?search=concurrent-")
    assert sorted(p["name"] for p in listed) == names
    status, audit = http.request("GET", "/api/audit?limit=50")
    assert {e["identity"] for e in audit if e["action"] == "enroll"} >= set(names)
    for name in names:
        assert http.request("DELETE", f"/api/identities/{name}")[0] == 200
