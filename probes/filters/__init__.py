"""Common filters between two networks (Genovese et al., ICIP 2019) and linear CKA between their layers.

::

    from probes.datasets import load_utkface
    from probes.filters import FilterComparison, load_network

    a, b = load_network("hse-mobilenet-vggface2"), load_network("mobileface")
    faces = load_utkface(max_images=300)  # a FaceDataset: each network crops it for its own input
    result = FilterComparison(threshold=0.5, n_baseline=3).compare(a, b, images=faces)
    print(result.table)            # matched |cos|, fraction above threshold, CKA, each beside chance
    result.plot_matched(); result.plot_cka(); result.save("runs/filters")

Command line: ``python -m probes.filters A B`` (``--help``). A network is a
backbone registry name or ``package.module:function[=arg]`` imported at run
time, so networks from outside :mod:`probes` (GAN generators) come in
without this package importing them.

Modules: :mod:`.layers` (weight layers, random twins), :mod:`.networks` (:class:`Network`,
:func:`load_network`), :mod:`.pairing` (corresponding layers), :mod:`.matching` (Hungarian
matching), :mod:`.cka`, :mod:`.compare` (:class:`FilterComparison`), :mod:`.result`
(:class:`FilterResult`); ``__main__`` is the command.
"""

from .cka import cka_matrix, linear_cka, normalised_gram
from .compare import FilterComparison
from .layers import Layer, LayerMismatchError, NetworkSpecError
from .matching import (
    FilterMatch,
    filter_similarity,
    live_filters,
    match_filters,
    normalise_filters,
)
from .networks import Network, as_network, load_network
from .pairing import PAIRINGS, pair_layers, parse_pairs
from .result import FilterResult, LayerPairResult, chance_interval

__all__ = ["PAIRINGS", "FilterComparison", "FilterMatch", "FilterResult", "Layer", "LayerMismatchError",
           "LayerPairResult", "Network", "NetworkSpecError", "as_network", "chance_interval", "cka_matrix",
           "filter_similarity", "linear_cka", "live_filters", "load_network", "match_filters", "normalise_filters",
           "normalised_gram", "pair_layers", "parse_pairs"]
