"""Face datasets as lists of image paths plus labels.

A :class:`FaceDataset` never holds pixels: it holds paths, a label table
(``identity``, ``age`` in years, ``sex`` 0 = male / 1 = female, ``race``) and a
``layout`` (``"utkface"``, ``"lfw"`` or ``"chip"``) that tells a backbone which
crop to take. Images are read on demand with :func:`probes.images.load_image`.

Where the data live: every loader takes a root argument; without one it reads
``FACEPROBE_DATA`` (the folder holding ``utkface/`` and ``lfw_home/``). LFW
also honours ``FACEPROBE_LFW_HOME`` (scikit-learn's ``data_home``, i.e. the
folder holding ``lfw_home/``; pointing at ``lfw_home`` itself works too).

LFW and scikit-learn: :func:`load_lfw_people` and :func:`load_lfw_pairs` read
the original 250 x 250 JPEGs and the official protocol files themselves, in
scikit-learn's folder layout (``lfw_home/lfw/<Name>/<Name>_NNNN.jpg``,
``lfw_home/pairs*.txt``). scikit-learn's loaders are *not* used to read:
they return 62 x 47 downsampled arrays and write a joblib cache into
``lfw_home/joblib``, which fails on a read-only shared folder. They are called
only when files are missing and ``download_if_missing=True``: then
``fetch_lfw_pairs(subset="test", funneled=False)`` downloads the archive and
protocol files into ``data_home/lfw_home`` (a folder we are writing to anyway,
so its joblib cache is harmless there).

Modules: :mod:`.records` (FaceDataset, LFWPairs), :mod:`.roots` (the data root, seeded subsets),
:mod:`.utkface`, :mod:`.lfw`, :mod:`.folder` (the loaders) and :mod:`.splits` (splits, load by name).
"""

from .folder import load_folder
from .lfw import LFW_PAIR_FILES, lfw_home, load_lfw_pairs, load_lfw_people, parse_lfw_pairs_file
from .records import LABEL_COLUMNS, LAYOUTS, FaceDataset, LFWPairs
from .roots import DATA_ENV, LFW_ENV, data_root, subsample_indices
from .splits import DATASETS, identity_split, load_dataset
from .utkface import UTKFACE_RACES, load_utkface, parse_utkface_name

__all__ = ["DATASETS", "DATA_ENV", "LABEL_COLUMNS", "LAYOUTS", "LFW_ENV", "LFW_PAIR_FILES", "UTKFACE_RACES",
           "FaceDataset", "LFWPairs", "data_root", "identity_split", "lfw_home", "load_dataset", "load_folder",
           "load_lfw_pairs", "load_lfw_people", "load_utkface", "parse_lfw_pairs_file", "parse_utkface_name",
           "subsample_indices"]
