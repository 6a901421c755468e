"""The medseg-dfl command line (installed as ``medseg_dfl.cli``): wiring only, no logic."""
