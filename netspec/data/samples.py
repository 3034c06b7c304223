"""Write sample images to disk, for trying `netspec infer` (the demo uses it).

    python -m netspec.data.samples digits OUT_DIR [--count 10]

writes validation-split digits (never trained on) as 8×8 grayscale PNGs named
`<index>_label<digit>.png`, so the predicted label can be checked against the name.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from netspec.data import digits_arrays


def write_digits(out: Path, count: int) -> list[Path]:
    images, labels, _, val_index = digits_arrays()  # the validation split training held out
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in val_index[:count]:
        path = out / f"{i:04d}_label{labels[i]}.png"
        Image.fromarray(images[i, 0]).save(path)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=["digits"])
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=10, help="how many (at most the 360 validation digits)")
    args = parser.parse_args()
    if args.count < 1:
        parser.error(f"--count must be at least 1, got {args.count}")
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"{args.out} exists and is not a directory")
    for path in write_digits(args.out, args.count):
        print(path)


if __name__ == "__main__":
    main()
