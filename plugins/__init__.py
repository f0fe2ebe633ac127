"""clipforge's built-in plugins (imported as ``clipforge_plugins``, the one name to use).

Each module here is an ordinary plugin, written only against ``clipforge``'s public API. The
built-ins are always registered, as pytest's and llm's defaults are (listed in
``clipforge.registry.BUILTIN_PLUGINS``: a new built-in is a module here and a line there), and can
be listed and blocked by name like any third-party plugin. Together they implement the
paper's exact setup (../shared/PAPER.md):

- ``open_clip_backbone``: open_clip models (named, ``local-dir:``, checkpoint files, the bundled
  offline models), each with its own normalisation and input size.
- ``pixel``: raw RGB pixels, grown by bicubic resizing, clamped to [0, 1] after each backward.
- ``paper_augmentations``: random affine, resize to the model's input, ColorShift, jitter.
- ``regularizers``: total variation (four directions) and L1.
- ``progress``, ``metrics_log``, ``snapshots``: callbacks for the terminal and the run directory.
"""
