"""Plan an experiment from the data, as nnU-Net does: ``plan_experiment(data_dir) -> Plan``, ``write_plan``.

A survey of every case (:mod:`.survey`) feeds the decisions: spatial dims, channels, classes and
modality, intensity normalisation, target spacing (:mod:`.decisions`), patch size, DynUNet kernels and
strides, batch size within a memory budget (:mod:`.topology`), with a time budget the network among
a few timed candidates (:mod:`.candidates`: nnU-Net's DynUNet on a GPU or a GPU-like budget) and the
epochs that fit it (:mod:`.timing`). :func:`write_plan` writes the config with a comment on every key
saying why.
"""

from medseg_dfl.planning.plan import DEFAULT_LOSS, Plan, plan_experiment
from medseg_dfl.planning.writer import plan_to_yaml, write_plan

__all__ = ["DEFAULT_LOSS", "Plan", "plan_experiment", "plan_to_yaml", "write_plan"]
