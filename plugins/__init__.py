"""clipforge's built-in plugins (installed as the ``clipforge_plugins`` package).

Each module here is an ordinary plugin, found through the ``clipforge`` entry-point group like any
third-party plugin and written only against ``clipforge``'s public API. Together they implement the
paper's exact setup (../shared/PAPER.md):

- ``open_clip_backbone``: open_clip models (named, ``local-dir:``, checkpoint files, the bundled
  offline models), each with its own normalisation and input size.
- ``pixel``: raw RGB pixels, grown by bicubic resizing, clamped to [0, 1] after each backward.
- ``paper_augmentations``: random affine, resize to the model's input, ColorShift, jitter.
- ``regularizers``: total variation (four directions) and L1.
- ``progress``, ``metrics_log``, ``snapshots``: callbacks for the terminal and the run directory.
"""
