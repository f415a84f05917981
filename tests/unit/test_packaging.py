"""The wheel's layout: every package of gen/ is listed in pyproject.toml, and the top-level
templates/ folder is mapped into the package, where kpgen/resources.py finds it."""

from __future__ import annotations

import tomllib
from pathlib import Path

from kpgen import resources

REPO = Path(__file__).resolve().parents[2]


def setuptools_config() -> dict:
    with (REPO / "pyproject.toml").open("rb") as fh:
        return tomllib.load(fh)["tool"]["setuptools"]  # type: ignore[no-any-return]


def test_every_package_of_gen_is_listed() -> None:
    found = {".".join(p.parent.relative_to(REPO / "gen").parts) for p in (REPO / "gen").rglob("__init__.py")}
    listed = set(setuptools_config()["packages"])
    assert found - listed == set(), "packages missing from pyproject.toml [tool.setuptools] packages"
    assert listed - found == {"kpgen.templates"}


def test_templates_sit_at_the_top_and_are_mapped_into_the_package() -> None:
    config = setuptools_config()
    assert config["package-dir"]["kpgen.templates"] == "templates"
    assert config["package-data"]["kpgen.templates"] == ["**/*"]
    assert (REPO / "templates" / "core" / "core.c.j2").is_file()
    assert not (REPO / "gen" / "kpgen" / "templates").exists()
    assert resources.TEMPLATES == REPO / "templates"
