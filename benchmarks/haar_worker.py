"""OpenCV Haar-cascade face detection, run in its own environment.

OpenCV 5 dropped CascadeClassifier and its cascades from the main wheels, so bench_detect.py runs this file with
an `opencv-python-headless<5` interpreter (``.venv-haar``, made on first use) and reads its JSON from stdout.

    python haar_worker.py frames.npz REPEATS THREADS     -> per frame: median/p90 seconds and boxes (x1,y1,x2,y2)
    python haar_worker.py --images list.txt               -> per image: boxes and seconds
"""

import json
import sys
import time

import cv2
import numpy as np

MIN_FACE = 12


def detector():
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")

    def detect(frame):
        grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        found = cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=3, minSize=(MIN_FACE, MIN_FACE))
        boxes = np.asarray(found, np.float64).reshape(-1, 4)
        return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], 1).tolist()

    return detect


def main() -> None:
    detect = detector()
    if sys.argv[1] == "--images":
        out = []
        for path in open(sys.argv[2]).read().split("\n"):
            if path:
                frame = cv2.imread(path, cv2.IMREAD_COLOR)
                start = time.perf_counter()
                boxes = detect(frame)
                out.append({"boxes": boxes, "seconds": time.perf_counter() - start})
        print(json.dumps(out))
        return
    frames, repeats, threads = np.load(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    cv2.setNumThreads(threads)
    out = {}
    for name in frames.files:
        frame = frames[name]
        detect(frame)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            boxes = detect(frame)
            times.append(time.perf_counter() - start)
        out[name] = {"median_s": float(np.median(times)), "p90_s": float(np.percentile(times, 90)), "boxes": boxes}
    print(json.dumps({"opencv": cv2.__version__, "frames": out}))


if __name__ == "__main__":
    main()
