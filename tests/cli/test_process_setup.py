"""The CLI's process set-up (cli/main.py: set_up_process) is the package's one module-level state:
importing the CLI changes nothing; starting a command sets OMP_WAIT_POLICY (except for the
commands that train: libgomp's default spin-then-sleep runs their steps faster), marks ignite absent
(except for export-bundle) and hides Typer's ``<bool>`` placeholder, before torch is imported."""

from __future__ import annotations

import subprocess
import sys

import pytest

_PROBE = """
import os, sys
os.environ.pop("OMP_WAIT_POLICY", None)
sys.modules.pop("ignite", None)
from typer.core import TyperOption
import medseg_dfl.cli.main as cli

def state():
    patched = getattr(TyperOption.display_type_rich, "_medseg_flags", False)
    return (os.environ.get("OMP_WAIT_POLICY"), "ignite" in sys.modules and sys.modules["ignite"] is None, patched)

print("imported", state())
try:
    cli.app(sys.argv[1:])
except SystemExit:
    pass
print("started", state(), "torch" in sys.modules)
"""


@pytest.mark.parametrize(
    ("args", "policy", "ignite_absent", "torch_loaded"),
    [
        (["evaluate", "/nonexistent", "/tmp"], "'PASSIVE'", True, False),
        (["export-bundle", "/nonexistent", "/tmp/b"], "'PASSIVE'", False, True),
        (["train", "/nonexistent.yaml"], "None", True, False),
    ],
)
def test_importing_the_cli_changes_nothing_and_a_command_sets_up_its_process(args, policy, ignite_absent, torch_loaded):
    result = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, timeout=120)
    lines = result.stdout.splitlines()
    assert lines[0] == "imported (None, False, False)", result.stdout + result.stderr
    assert lines[1] == f"started ({policy}, {ignite_absent}, True) {torch_loaded}", result.stdout + result.stderr


def test_a_policy_already_set_is_kept(monkeypatch):
    from medseg_dfl.cli.main import set_up_process

    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    monkeypatch.setitem(sys.modules, "ignite", sys.modules.get("ignite"))  # restored afterwards
    set_up_process("export-bundle")
    import os

    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
