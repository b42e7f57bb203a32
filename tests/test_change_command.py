"""`localsoc change` and `plan --campaign later` without a bundle: their options and errors."""

from __future__ import annotations

from click.testing import CliRunner

from localsoc import change, change_command
from localsoc.command_line import main


def test_the_cli_spells_the_change_modules_choices_and_defaults():
    assert change_command.DESIGNS == change.DESIGNS
    assert change_command.PAIR_BY == change.PAIR_BY
    assert change_command.CAMPAIGNS == change.CAMPAIGNS
    assert (change_command.LEVEL, change_command.ALPHA, change_command.POWER,
            change_command.PAIR_TOLERANCE_M) == (change.LEVEL, change.ALPHA, change.POWER,
                                                 change.PAIR_TOLERANCE_M)


def test_change_is_a_command_and_plan_later_needs_a_target(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["change", "--help"])
    assert result.exit_code == 0 and "--baseline" in result.output and "--later" in result.output
    scans = tmp_path / "scans.csv"
    scans.write_text("sample_id,nm_400\na,0.1\n")
    result = runner.invoke(main, ["plan", str(scans), "--site", "s", "--campaign", "later"])
    assert result.exit_code == 2 and "--target-change" in result.output
    result = runner.invoke(main, ["change", "--site", "s", "--later", str(scans)])
    assert result.exit_code == 2 and "--baseline" in result.output
