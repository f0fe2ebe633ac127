"""Where the ``clipforge`` command prints: ``out`` (standard output: results, listings) and ``err``
(standard error: warnings, errors, interruptions), plain text without markup or highlighting.

They are apart, in a module of their own, because both :mod:`clipforge.commands` and
:mod:`clipforge.listing` print through them (and :mod:`clipforge.cli` its errors), and neither of
those may import the other's verbs both ways without a circle.
"""

from __future__ import annotations

from rich.console import Console

err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)
out = Console(highlight=False, soft_wrap=True, markup=False)
