"""clipforge-zoo: the toy world's study models, found by clipforge through the ``clipforge.models``
entry point (``MODELS_ROOT``, a folder of open_clip ``local-dir`` model folders). Name one in a spec as
any bundled model: ``{"name": "open_clip", "options": {"model": "toyworld-rn-3k"}}``. Their recipes are
clipforge's (``clipforge.toyworld.train.RECIPES``); ``clipforge models`` lists them."""

from __future__ import annotations

from pathlib import Path

#: the folder of this package's model folders (one per model, named as the model)
MODELS_ROOT = Path(__file__).parent / "models"
