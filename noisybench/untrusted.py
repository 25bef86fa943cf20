"""Reading pickled data files that may come from anyone, without running their code.

CIFAR's python batches are plain pickles and the CIFAR-N label files ``torch.save``d
dicts of numpy arrays. Unpickling can call any function the file names; here only what a
numpy array needs is allowed, and anything else fails with an error naming the file.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from noisybench.errors import DataError

_NUMPY_CORE = "numpy._core.multiarray" if hasattr(np, "_core") else "numpy.core.multiarray"
ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}


class NumpyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED or (module == "numpy.dtypes" and name.endswith("DType")):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays may be unpickled")


def load_pickle(path: Path) -> Any:
    """A plain pickle of numbers, strings, lists, dicts and numpy arrays."""
    try:
        with open(path, "rb") as handle:
            return NumpyUnpickler(handle, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise DataError(f"{path}: not a plain pickle of arrays ({exc})") from None


def load_torch_arrays(path: Path) -> Any:
    """A ``torch.save``d file of tensors, numbers and numpy arrays (``weights_only=True``)."""
    import importlib

    core = importlib.import_module(_NUMPY_CORE)
    allowed = [core._reconstruct, np.ndarray, np.dtype, *{type(np.dtype(t)) for t in np.sctypeDict.values()}]
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        raise DataError(f"{path}: cannot be read as tensors and arrays only ({str(exc).splitlines()[0]})") from None
