"""Enrol a folder of people: one sub-folder of photos per person (the sub-folder name is the identity).

    python examples/enroll_folder.py PHOTOS_DIR --gallery people.db [--model default] [--replace]

Photos without a detectable face are reported and skipped; each person is stored in one transaction, so an
interrupted run leaves every person either fully enrolled or absent. (The `crres enroll --folder` command does
the same from the shell.)
"""

import argparse
import sys
from pathlib import Path

from crres_sdk import NoFaceError, Recognizer, load_image

SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", type=Path)
    p.add_argument("--gallery", required=True)
    p.add_argument("--model", default="default")
    p.add_argument("--replace", action="store_true", help="replace existing identities' templates")
    args = p.parse_args()
    if not args.folder.is_dir():
        p.error(f"{args.folder} is not a directory")
    people = sorted(d for d in args.folder.iterdir() if d.is_dir())
    with Recognizer(args.model, gallery=args.gallery) as rec:
        for i, person in enumerate(people, 1):
            images, faces = [], []
            for path in sorted(f for f in person.iterdir() if f.suffix.lower() in SUFFIXES):
                try:
                    frame = load_image(path)
                    found = rec.detect(frame)
                except ValueError as exc:
                    print(f"  skip {path}: {exc}", file=sys.stderr)
                    continue
                if not found:
                    print(f"  skip {path}: no face", file=sys.stderr)
                    continue
                images.append(frame)
                faces.append(max(found, key=lambda f: f.width * f.height))
            if not images:
                print(f"[{i}/{len(people)}] {person.name}: no usable photo, not enrolled")
                continue
            try:
                n = rec.enroll(person.name, images, faces=faces, replace=args.replace,
                               metadata={"photos": len(images)})
            except (NoFaceError, ValueError) as exc:
                print(f"[{i}/{len(people)}] {person.name}: failed ({exc})", file=sys.stderr)
                continue
            print(f"[{i}/{len(people)}] {person.name}: {len(images)} photo(s), {n} templates")
        print(f"{rec.gallery.path}: {len(rec.gallery)} identities, {rec.gallery.n_templates} templates")
    return 0


if __name__ == "__main__":
    sys.exit(main())
