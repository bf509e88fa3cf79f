"""A real RTSP server for the camera tests: GStreamer's gst-rtsp-server (Debian: gir1.2-gst-rtsp-server-1.0,
python3-gi, gstreamer1.0-plugins-good) serving an MJPEG AVI file as RTP/JPEG on 127.0.0.1, paced at the file's
frame rate.

Run with the system Python that has PyGObject (not the project's venv)::

    /usr/bin/python3 tests/serve/rtsp_server.py CLIP.avi PORT

serves ``rtsp://127.0.0.1:PORT/cam``, prints ``ready`` once it listens and runs until killed. Each client gets
the file from its start.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> int:
    clip, port = sys.argv[1], sys.argv[2]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    # re-encoded by GStreamer's jpegenc: RTP/JPEG (RFC 2435) carries baseline JPEGs only and rebuilds their
    # headers at the receiver; the AVI's frames as OpenCV's MJPEG writer made them arrived corrupt without it
    factory.set_launch(f'( filesrc location="{clip}" ! avidemux ! jpegdec ! jpegenc quality=90 '
                       '! rtpjpegpay name=pay0 pt=26 )')
    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{port}", file=sys.stderr, flush=True)
        return 1
    print("ready", flush=True)
    GLib.MainLoop().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
