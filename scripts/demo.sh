#!/usr/bin/env bash
# Set up (if needed) and run the demo (`medseg-dfl demo`): train with the Dual Focal Loss on the
# synthetic smears of sample_data/blood_smear plus the real BCCD smears of sample_data/blood_smear_bccd
# (configs/blood_smear_2d.yaml), segment the synthetic validation slides, print their Dice per class.
source "$(dirname "$0")/_env.sh"
medseg-dfl demo "$@"
