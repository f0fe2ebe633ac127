"""The paper's analyses, each built on batches of inversions and judged by a held-out model.

- :mod:`.probe`: attribute (bias) probes: which attribute do inversions of neutral prompts show?
- :mod:`.screen`: safety screening of inversions, and the text-side similarity table.
- :mod:`.compare`: the same prompts and seeds over several backbones, scored by one judge.
- :mod:`.blend`: do inversions of combined prompts show both concepts?

Each analysis reads a JSON spec, runs its inversions under one progress bar, and writes a report
(``report.json`` and ``report.md`` with image grids) in its output directory.
"""
