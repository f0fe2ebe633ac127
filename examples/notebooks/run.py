"""Execute notebooks top to bottom in a fresh kernel of this Python, as CI does (nbclient, Jupyter's own
notebook executor). The first cell that raises fails the run, naming it; nothing is written beside the
notebooks unless --save asks (the kernel works in a temporary folder, so runs leave the checkout clean).

    python3 examples/notebooks/run.py examples/notebooks/quickstart.ipynb [--save DIR] [--timeout S]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from ipykernel.kernelspec import write_kernel_spec
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--timeout", type=int, default=600, help="seconds one cell may run (default 600)")
    parser.add_argument("--save", type=Path, help="write each executed notebook, with its outputs, into this folder")
    args = parser.parse_args()
    for path in args.notebooks:
        notebook = nbformat.read(path, as_version=4)
        with tempfile.TemporaryDirectory(prefix="clipforge-notebook-") as tmp:
            # A kernel spec for this very Python (sys.executable), so that the notebook never runs in another
            # environment's kernel, whatever kernel specs this machine or user has installed.
            write_kernel_spec(Path(tmp) / "kernels" / "python3")
            kernels = KernelSpecManager(kernel_dirs=[str(Path(tmp) / "kernels")], ensure_native_kernel=False)
            kernel = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=kernels)
            client = NotebookClient(notebook, km=kernel, timeout=args.timeout, resources={"metadata": {"path": tmp}})
            start = time.monotonic()
            client.execute(cleanup_kc=True)  # the kernel is shut down at the end, or at the failing cell
            seconds = time.monotonic() - start
        print(f"{path}: {len(notebook.cells)} cells executed in {seconds:.1f} s", flush=True)
        if args.save is not None:
            args.save.mkdir(parents=True, exist_ok=True)
            nbformat.write(notebook, args.save / path.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
