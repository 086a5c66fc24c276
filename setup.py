"""Build hook: the embedded corpus travels inside the package.

``data/carroll-alice.txt`` stays at the top of the repository (it is data, not code), and a
build copies it into the package as ``rbtw/data/carroll-alice.txt``, so that a plain
``pip install .`` (not only an editable one) finds it (rbtw.data.corpus.default_text_path).
Everything else about the package is in pyproject.toml.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CORPUS = Path("data") / "carroll-alice.txt"


class BuildWithCorpus(build_py):
    def run(self):
        super().run()
        if not self.editable_mode:      # an editable install reads data/ where it is
            target = Path(self.build_lib) / "rbtw" / "data" / CORPUS.name
            self.copy_file(str(CORPUS), str(target))


setup(cmdclass={"build_py": BuildWithCorpus})
