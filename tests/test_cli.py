from click.testing import CliRunner

from rbtw import __version__
from rbtw.cli import main


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output
