"""Does a copy link to its drawing whichever of the two is registered first?

    python benchmarks/image_order.py --drawings 40 --seed 1 --json

The labelled set (``_image_pairs``) measures each copy registered after its drawing. An operator's files
come in any order: a cropped or resized export may be registered before the SVG it was made from. This
takes ``--drawings`` drawings drawn with ``--seed`` from the Open Clip Art corpus (all but ``logos/``),
makes each one's copies as the labelled set does (``_image_pairs.copy_contents``: every kind of copy) and
asks ``fingerprints.images_match`` of the current image method, as ``register_works`` decides, in both
orders: the drawing registered and the copy new, then the copy registered and the drawing new. It counts,
per kind of copy, the pairs linked in each order and those where the two orders disagree.
"""

from __future__ import annotations

import argparse
import json
import random
import sys

from _image_pairs import copy_contents, corpus_files

from endcredits.errors import ValidationError
from endcredits.registry import fingerprints as fp


def run(drawings_n: int, seed: int) -> dict[str, dict[str, int]]:
    files = corpus_files()
    counts: dict[str, dict[str, int]] = {}
    for index in sorted(random.Random(seed).sample(range(len(files)), drawings_n)):
        svg = files[index].read_bytes()
        try:
            drawing = fp.image_fingerprint(svg, "image/svg+xml")
        except ValidationError:  # a drawing the registry refuses has no copies to link
            continue
        if drawing is None:
            continue
        for kind, made in copy_contents(svg, index).items():
            copy = fp.image_fingerprint(made, "image")
            assert copy is not None
            forward = fp.images_match(drawing.value, copy.value, drawing.method, (svg, made))[1]
            backward = fp.images_match(copy.value, drawing.value, copy.method, (made, svg))[1]
            row = counts.setdefault(kind, {"pairs": 0, "drawing_first": 0, "copy_first": 0, "disagree": 0})
            row["pairs"] += 1
            row["drawing_first"] += forward
            row["copy_first"] += backward
            row["disagree"] += forward != backward
    counts["all"] = {key: sum(row[key] for row in counts.values()) for key in next(iter(counts.values()))}
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--drawings", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    counts = run(args.drawings, args.seed)
    for kind, row in counts.items():
        print(
            f"{kind:<18} {row['pairs']:>5} pairs  drawing first {row['drawing_first']:>5}  copy first"
            f" {row['copy_first']:>5}  disagree {row['disagree']:>4}",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps({"image_method": fp.IMAGE_METHOD, "seed": args.seed, "counts": counts}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
