from click.testing import CliRunner

from tenantproxy.cli import main


def test_up_with_an_unknown_setting_fails_naming_it_before_starting_anything(tmp_path):
    state_dir = tmp_path / "state"
    result = CliRunner().invoke(
        main, ["stack", "up", "--state-dir", str(state_dir), "--set", "tenant=3"]
    )
    assert result.exit_code == 1
    assert "--set tenant: unknown setting" in result.output
    assert not state_dir.exists()


def test_status_without_a_stack_says_so(tmp_path):
    result = CliRunner().invoke(main, ["stack", "status", "--state-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "no stack in" in result.output


def test_down_without_a_stack_does_nothing(tmp_path):
    result = CliRunner().invoke(main, ["stack", "down", "--state-dir", str(tmp_path / "none")])
    assert result.exit_code == 0
    assert "nothing to do" in result.output


def test_down_refuses_to_remove_a_folder_that_is_not_a_stack(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    result = CliRunner().invoke(main, ["stack", "down", "--state-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert (tmp_path / "precious.txt").exists()


def test_up_refuses_a_folder_that_is_not_a_stack(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    result = CliRunner().invoke(
        main, ["stack", "up", "--state-dir", str(tmp_path), "--set", "start_proxy=false"]
    )
    assert result.exit_code == 1
    assert "holds no stack" in result.output
    assert (tmp_path / "precious.txt").exists()
