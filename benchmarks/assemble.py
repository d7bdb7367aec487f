"""Assemble BENCHMARKS.md from the per-topic result files in benchmarks/results/.

Each topic's script writes (or its author updates) `benchmarks/results/<topic>.md`; this joins them
under the summary kept in `benchmarks/results/_summary.md`, so BENCHMARKS.md never drifts from them.
Run: `python benchmarks/assemble.py`.
"""

import pathlib

HERE = pathlib.Path(__file__).resolve().parent
ORDER = ["forward_signals", "fitting", "montecarlo", "networks", "training", "volume_inference"]


def main() -> None:
    results = HERE / "results"
    parts = [(results / "_summary.md").read_text().rstrip()]
    topics = ORDER + sorted(p.stem for p in results.glob("*.md") if p.stem not in ORDER and not p.stem.startswith("_"))
    for topic in topics:
        text = (results / f"{topic}.md").read_text().rstrip()
        # Demote the topic's headings by one level under BENCHMARKS.md's title.
        text = "\n".join("#" + line if line.startswith("#") else line for line in text.splitlines())
        parts.append(f"<!-- from benchmarks/results/{topic}.md -->\n{text}")
    (HERE.parent / "BENCHMARKS.md").write_text("\n\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
