"""``python -m medseg_dfl.cli`` (also what ``torchrun -m medseg_dfl.cli`` runs)."""

from medseg_dfl.cli.main import main

if __name__ == "__main__":
    main()
