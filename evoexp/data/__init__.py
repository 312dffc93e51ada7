"""Offline datasets for evoexp: spike trains for SNNs plus the static twin for ANNs.

Importing this package registers ``"randman"``, ``"digits"``, ``"synthetic"``, ``"shd"`` and ``"ssc"`` with
:func:`get_dataset`.
"""

from evoexp.data.dataset import (
    DatasetSplits,
    SpikeDataset,
    available_datasets,
    get_dataset,
    make_loader,
    register_dataset,
    split_dataset,
    stratified_split,
)
from evoexp.data.digits import make_digits
from evoexp.data.encoding import latency_encode, latency_steps, rate_encode
from evoexp.data.randman import RandomManifold, make_randman
from evoexp.data.shd import make_shd, make_ssc
from evoexp.data.synthetic import make_synthetic

__all__ = [
    "DatasetSplits",
    "RandomManifold",
    "SpikeDataset",
    "available_datasets",
    "get_dataset",
    "latency_encode",
    "latency_steps",
    "make_digits",
    "make_loader",
    "make_randman",
    "make_shd",
    "make_ssc",
    "make_synthetic",
    "rate_encode",
    "register_dataset",
    "split_dataset",
    "stratified_split",
]
