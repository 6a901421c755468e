"""Blood-smear cells: scale (pixel size or estimated red-cell diameter), instances from a semantic
mask, counts and per-cell measurements.

Analysis only: images and label maps in; instances, counts and scales out (numpy, scipy and
scikit-image). No checkpoints and no drawing: the ``count`` pipeline from a checkpoint is
:mod:`medseg_dfl.engine.counting`, the pictures :mod:`medseg_dfl.visualize.cells_overlay`; both
import this package, never the other way round. The training code records its scale with
:func:`~medseg_dfl.cells.scale.training_scale`.
"""

from medseg_dfl.cells.counts import cell_rows, count_row, write_cells_csv, write_counts_csv
from medseg_dfl.cells.instances import CellInstances, InstanceParams, cell_kind, label_instances
from medseg_dfl.cells.scale import CellScale, estimate_cell_diameter, pixel_size_from_file, resolve_scale

__all__ = [
    "CellInstances",
    "CellScale",
    "InstanceParams",
    "cell_kind",
    "cell_rows",
    "count_row",
    "estimate_cell_diameter",
    "label_instances",
    "pixel_size_from_file",
    "resolve_scale",
    "write_cells_csv",
    "write_counts_csv",
]
