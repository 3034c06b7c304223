"""Write sample images to disk, for trying `netspec infer` (the demo uses it).

    python -m netspec.data.samples digits OUT_DIR [--count 10]

writes validation-split digits (never trained on) as 8×8 grayscale PNGs named
`<index>_label<digit>.png`, so the predicted label can be checked against the name.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image


def write_digits(out: Path, count: int) -> list[Path]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    index = np.arange(len(digits.target))
    _, val = train_test_split(index, test_size=0.2, stratify=digits.target, random_state=0)  # as in training
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in val[:count]:
        path = out / f"{i:04d}_label{digits.target[i]}.png"
        Image.fromarray(np.round(digits.images[i] * (255 / 16)).astype(np.uint8), mode="L").save(path)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=["digits"])
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=10)
    args = parser.parse_args()
    for path in write_digits(args.out, args.count):
        print(path)


if __name__ == "__main__":
    main()
