#!/usr/bin/env bash
# Set up (if needed) and run the demo (`medseg-dfl demo`): train with the Dual Focal Loss on
# sample_data/blood_smear, segment the validation slides, print their Dice per class.
source "$(dirname "$0")/_env.sh"
medseg-dfl demo "$@"
