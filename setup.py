"""The build's two steps beyond setuptools' own (the metadata stays in setup.cfg).

A wheel holds everything the app serves: `build_py` copies the top-level `templates/`
(their one source) into the package (`standalone_mfa/templates/`, which exists only in
the build) and compiles each `translations/<locale>/LC_MESSAGES/messages.po` into the
`messages.mo` Flask-Babel reads. Babel comes from `build-system.requires`.

`pip install -e .` builds nothing into a folder of its own: the package is the checkout,
which finds the top-level `templates/` itself (see `standalone_mfa.core.paths`), and the
catalogues are compiled in place, next to their `.po` (where `make` puts them too), so
no way of installing leaves the pages in English."""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py as _build_py

HERE = Path(__file__).resolve().parent
PACKAGE = "standalone_mfa"
TEMPLATES = HERE / "templates"
TRANSLATIONS = HERE / PACKAGE / "translations"


def compile_catalogue(po_path: Path, mo_path: Path, locale: str) -> None:
    """`pybabel compile` for one catalogue (fuzzy entries left out, as it does); a
    catalogue with errors stops the build instead of shipping half translated."""
    from babel.messages import mofile, pofile

    with po_path.open("rb") as handle:
        catalog = pofile.read_po(handle, locale=locale)
    errors = [f"{message.id!r}: {error}" for message, errs in catalog.check() for error in errs]
    if errors:
        raise SystemExit(f"{po_path}: " + "; ".join(errors))
    mo_path.parent.mkdir(parents=True, exist_ok=True)
    with mo_path.open("wb") as handle:
        mofile.write_mo(handle, catalog)


def catalogues() -> list[tuple[str, Path]]:
    """Each locale with its `.po`, relative to the translations folder."""
    return [
        (po.parents[1].name, po.relative_to(TRANSLATIONS))
        for po in sorted(TRANSLATIONS.glob("*/LC_MESSAGES/messages.po"))
    ]


class build_py(_build_py):
    def run(self):
        super().run()
        if self.editable_mode:
            # The package is the checkout: its catalogues go beside their sources.
            for locale, po in catalogues():
                compile_catalogue(
                    TRANSLATIONS / po, (TRANSLATIONS / po).with_suffix(".mo"), locale
                )
            return
        package = Path(self.build_lib) / PACKAGE
        shutil.rmtree(package / "templates", ignore_errors=True)
        shutil.copytree(TEMPLATES, package / "templates")
        for locale, po in catalogues():
            compile_catalogue(
                TRANSLATIONS / po, (package / "translations" / po).with_suffix(".mo"), locale
            )

    def get_outputs(self, include_bytecode=1):
        outputs = super().get_outputs(include_bytecode)
        if self.editable_mode:
            return outputs
        package = Path(self.build_lib) / PACKAGE
        templates = [
            str(package / "templates" / path.relative_to(TEMPLATES))
            for path in sorted(TEMPLATES.rglob("*"))
            if path.is_file()
        ]
        compiled = [
            str((package / "translations" / po).with_suffix(".mo")) for _, po in catalogues()
        ]
        return [*outputs, *templates, *compiled]


if __name__ == "__main__":  # as setuptools runs it; tests import compile_catalogue
    setup(cmdclass={"build_py": build_py})
