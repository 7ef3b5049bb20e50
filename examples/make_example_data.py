"""Build examples/example.jsonl from the hand-written pairs in examples/example_pairs.yaml.

Each item gets two constitutions over its category's built-in principles (the positive one and the one
with every principle flipped, in a seeded random order) and the matching hand-written responses.
Run: python examples/make_example_data.py
"""

import random
from pathlib import Path

import yaml

from sami.data.principles import load_library, sample_constitutions
from sami.data.records import Record, write_records

HERE = Path(__file__).parent


def main() -> None:
    library = load_library()
    items = yaml.safe_load((HERE / "example_pairs.yaml").read_text())["items"]
    rng = random.Random(0)
    records, counts = [], {}
    for item in items:
        category = item["category"]
        counts[category] = counts.get(category, 0) + 1
        constitutions = sample_constitutions(library.for_category(category), "flip_all", rng=rng)
        records.append(
            Record(
                id=f"{category}-{counts[category]:02d}",
                category=category,
                query=item["query"].strip(),
                constitutions=tuple(constitutions),
                responses=(item["positive"].strip(), item["antithesis"].strip()),
                provenance={
                    "source": "examples/example_pairs.yaml",
                    "author": "hand-written",
                    "strategy": "flip_all",
                    "seed": 0,
                },
            )
        )
    write_records(HERE / "example.jsonl", records)
    print(f"wrote {len(records)} records to {HERE / 'example.jsonl'}")


if __name__ == "__main__":
    main()
