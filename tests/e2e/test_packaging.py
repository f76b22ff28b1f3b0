"""Packaging (docs/deploy.md): the wheel holds every template, static file and
compiled catalogue, and, installed into a fresh virtual environment, serves and mails
in French from a folder outside the checkout; a missing or stale catalogue is caught;
`standalone-mfa` runs every command; a configuration error is one line and exit status
2 for every command, and one line before gunicorn stops."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import requests
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from click.testing import CliRunner
from support.paths import ROOT

from standalone_mfa import create_app
from standalone_mfa.cli import command_line
from standalone_mfa.core import paths
from standalone_mfa.core.crypto import generate_key

TRANSLATIONS = ROOT / "standalone_mfa" / "translations"
LOCALES = ("fr", "de", "es")
PYTHON = sys.executable
GUNICORN = Path(sys.executable).with_name("gunicorn")
# What the build reads: the sdist is made from a copy of these (so a build never writes
# into the checkout), then the wheel from the unpacked sdist, as `python -m build` does.
SOURCES = (
    "setup.py",
    "setup.cfg",
    "pyproject.toml",
    "MANIFEST.in",
    "README.md",
    "gunicorn.conf.py",
    "templates",
    "standalone_mfa",
)
# An error in the settings: one step too low, the line must name it.
BAD_SETTING = "MFA_LOCK_AFTER = 1\n"


def load_setup():
    """setup.py as a module (its `setup()` runs only as a script): the build's own
    catalogue compiler."""
    spec = importlib.util.spec_from_file_location("standalone_mfa_setup", ROOT / "setup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def messages(catalog) -> dict:
    """What a catalogue translates: msgid (a tuple for plurals) to its forms."""

    def key(value):
        return tuple(value) if isinstance(value, list | tuple) else value

    return {
        key(m.id): key(m.string)
        for m in catalog
        if m.id and m.string and not m.fuzzy and (not isinstance(m.string, tuple) or all(m.string))
    }


def catalogue_differences(po: bytes, mo: bytes | None, locale: str) -> list[str]:
    """Why a compiled catalogue does not say what its source says (empty: it does)."""
    if mo is None:
        return ["no compiled catalogue"]
    wanted = messages(read_po(io.BytesIO(po), locale=locale))
    built = messages(read_mo(io.BytesIO(mo)))
    return [f"missing or different: {k!r}" for k in wanted if built.get(k) != wanted[k]] + [
        f"not in the source: {k!r}" for k in built if k not in wanted
    ]


def source_po(locale: str) -> bytes:
    return (TRANSLATIONS / locale / "LC_MESSAGES" / "messages.po").read_bytes()


def clean_env(**extra) -> dict[str, str]:
    """This environment without FLASK_ variables, a settings folder or a PYTHONPATH."""
    drop = ("PYTHONPATH", paths.INSTANCE_VARIABLE, "PROMETHEUS_MULTIPROC_DIR")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASK_") and k not in drop}
    return env | extra


def checkout_env(**extra) -> dict[str, str]:
    """`clean_env` with this checkout importable, for a command run from elsewhere."""
    return clean_env(PYTHONPATH=str(ROOT), **extra)


def write_settings(folder: Path, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.py").write_text(
        f'SECRET_KEY = "{"k" * 64}"\nMFA_ENCRYPTION_KEYS = ["{generate_key()}"]\n'
        f'PASSWORD_HASH_METHOD = "pbkdf2:sha256:1000"\n{extra}'
    )
    return folder


def run(command, cwd, env, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: S603 -- our own commands
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_one_line(result, naming: str, status: int = 2) -> None:
    """A configuration error as an operator should see it: one line naming the
    setting, the exit status, no traceback."""
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode == status, lines
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    assert lines[0].startswith("Configuration error: ") and naming in lines[0], lines


# ------------------------------------------------------------------ catalogues


@pytest.mark.parametrize("locale", LOCALES)
def test_the_build_compiles_each_catalogue_to_what_its_source_says(tmp_path, locale):
    mo = tmp_path / "messages.mo"
    load_setup().compile_catalogue(
        TRANSLATIONS / locale / "LC_MESSAGES" / "messages.po", mo, locale
    )
    assert catalogue_differences(source_po(locale), mo.read_bytes(), locale) == []
    assert len(messages(read_mo(io.BytesIO(mo.read_bytes())))) > 100


def test_a_missing_or_stale_compiled_catalogue_is_caught(tmp_path):
    """The check the wheel test (and meta/test_translations' on the checkout) relies on
    fails for a missing catalogue, a changed translation and a new message."""
    po = tmp_path / "messages.po"
    po.write_bytes(source_po("fr"))
    mo = tmp_path / "messages.mo"
    load_setup().compile_catalogue(po, mo, "fr")
    compiled = mo.read_bytes()
    assert catalogue_differences(po.read_bytes(), compiled, "fr") == []
    assert catalogue_differences(po.read_bytes(), None, "fr") == ["no compiled catalogue"]

    changed = po.read_text().replace('msgstr "Se connecter"', 'msgstr "Connexion"', 1)
    assert changed != po.read_text()
    assert catalogue_differences(changed.encode(), compiled, "fr") != []
    added = po.read_text() + '\nmsgid "A sentence added since"\nmsgstr "Une phrase ajoutée"\n'
    assert catalogue_differences(added.encode(), compiled, "fr") == [
        "missing or different: 'A sentence added since'"
    ]


def test_the_app_warns_of_a_missing_or_older_compiled_catalogue(tmp_path, monkeypatch):
    folder = tmp_path / "translations" / "fr" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    monkeypatch.setattr(paths, "TRANSLATIONS", tmp_path / "translations")
    (folder / "messages.po").write_bytes(source_po("fr"))
    assert paths.catalogue_problems() == [f"{folder / 'messages.mo'} is missing"]
    load_setup().compile_catalogue(folder / "messages.po", folder / "messages.mo", "fr")
    assert paths.catalogue_problems() == []
    later = (folder / "messages.mo").stat().st_mtime + 10
    os.utime(folder / "messages.po", (later, later))
    assert paths.catalogue_problems() == [f"{folder / 'messages.mo'} is older than messages.po"]
    # Installed (no .po beside it): only a missing one counts.
    (folder / "messages.po").unlink()
    assert paths.catalogue_problems() == []


# ------------------------------------------------------------------ where files are


def test_a_checkout_serves_the_top_level_templates_and_an_install_its_own(tmp_path, monkeypatch):
    assert paths.templates() == ROOT / "templates"
    installed = tmp_path / "site-packages" / "standalone_mfa"
    installed.mkdir(parents=True)
    (tmp_path / "site-packages" / "templates").mkdir()  # another package's, not ours
    monkeypatch.setattr(paths, "PACKAGE", installed)
    assert paths.templates() == installed / "templates"


def test_standalone_mfa_instance_names_the_settings_folder(tmp_path, monkeypatch):
    folder = write_settings(tmp_path / "settings", 'MFA_ISSUER = "From the folder"\n')
    for name in [n for n in os.environ if n.startswith("FLASK_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv(paths.INSTANCE_VARIABLE, str(folder))
    app = create_app()
    assert app.instance_path == str(folder)
    assert app.config["MFA_ISSUER"] == "From the folder"
    assert app.config["DATABASE_URL"] == f"sqlite:///{folder}/standalone_mfa.sqlite3"
    # An explicit folder (the tests', a second instance's) still wins.
    other = write_settings(tmp_path / "other")
    assert create_app(instance_path=str(other)).instance_path == str(other)


# ------------------------------------------------------------------ one command


# Flask's own commands, with arguments that end them at once should the app ever load
# (their --help is shown without the app, hence without its settings).
FLASK_COMMANDS = {"routes": (), "shell": (), "run": ("--host", "256.0.0.0", "--port", "1")}


def command_paths() -> list[tuple[str, ...]]:
    """Every command and subcommand the app has, and Flask's own."""
    app = create_app({"TESTING": True, "DATABASE_URL": "sqlite://"})
    found = [(name,) for name in FLASK_COMMANDS]

    def walk(group, prefix):
        for name, command in sorted(group.commands.items()):
            found.append((*prefix, name))
            if hasattr(command, "commands"):
                walk(command, (*prefix, name))

    walk(app.cli, ())
    return found


COMMANDS = command_paths()


def test_standalone_mfa_has_every_command_of_flask_app(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.INSTANCE_VARIABLE, str(write_settings(tmp_path / "settings")))
    result = CliRunner().invoke(command_line(), ["--help"])
    assert result.exit_code == 0, result.output
    listed = set(re.findall(r"^  ([a-z-]+)", result.output.split("Commands:")[1], re.M))
    assert listed == {path[0] for path in COMMANDS}
    assert "--app" not in result.output


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_configuration_error_is_one_line_and_status_2_for_every_command(
    tmp_path, monkeypatch, command
):
    for name in [n for n in os.environ if n.startswith("FLASK_")]:
        monkeypatch.delenv(name)
    folder = write_settings(tmp_path / "settings", BAD_SETTING)
    monkeypatch.setenv(paths.INSTANCE_VARIABLE, str(folder))
    arguments = FLASK_COMMANDS.get(command[0], ("--help",))
    result = CliRunner().invoke(command_line(), [*command, *arguments])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("Configuration error: MFA_LOCK_AFTER must be"), line


@pytest.mark.parametrize(
    "command",
    [
        [PYTHON, "-c", "from standalone_mfa.cli import main; main()"],
        [PYTHON, "-m", "flask", "--app", "standalone_mfa"],
    ],
    ids=["standalone-mfa", "flask --app"],
)
def test_help_on_a_fresh_install_is_one_line(tmp_path, command):
    """No keys yet: one line saying which settings are missing, not two tracebacks."""
    env = checkout_env(**{paths.INSTANCE_VARIABLE: str(tmp_path / "settings")})
    assert_one_line(run([*command, "--help"], tmp_path, env), "SECRET_KEY")
    folder = write_settings(tmp_path / "settings", BAD_SETTING)
    assert_one_line(run([*command, "init-db"], tmp_path, env), "MFA_LOCK_AFTER")
    (folder / "config.py").write_text((folder / "config.py").read_text().replace(BAD_SETTING, ""))
    done = run([*command, "init-db"], tmp_path, env)
    assert done.returncode == 0, done.stderr
    assert f"Database ready: sqlite:///{folder}/standalone_mfa.sqlite3" in done.stdout


def test_the_instance_writer_uses_the_named_folder(tmp_path):
    folder = tmp_path / "settings"
    env = checkout_env(**{paths.INSTANCE_VARIABLE: str(folder)})
    result = run([PYTHON, "-m", "standalone_mfa.instance"], tmp_path, env)
    assert result.returncode == 0 and str(folder / "config.py") in result.stdout
    assert oct((folder / "config.py").stat().st_mode & 0o777) == "0o600"


@pytest.mark.server
@pytest.mark.parametrize("with_conf", [False, True], ids=["plain", "gunicorn.conf.py"])
def test_gunicorn_stops_with_one_line_on_a_configuration_error(tmp_path, with_conf):
    """`gunicorn 'standalone_mfa:create_app()'` from any folder: one line naming the
    setting, then gunicorn stops (no traceback, no worker booted again and again)."""
    folder = write_settings(tmp_path / "settings", BAD_SETTING)
    env = checkout_env(**{paths.INSTANCE_VARIABLE: str(folder)})
    command = [GUNICORN, "--bind=127.0.0.1:0", "--no-control-socket"]
    if with_conf:  # its proxy settings are read before the app: the same one line
        command.append(f"--config={ROOT / 'gunicorn.conf.py'}")
        env["FLASK_PROXY_FIX_X_FOR"] = '"two"'
    result = run([*command, "standalone_mfa:create_app()"], tmp_path, env, timeout=60)
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    ours = [line for line in output.splitlines() if "Configuration error" in line]
    if with_conf:
        assert_one_line(result, "PROXY_FIX_X_FOR")
    else:
        assert result.returncode == 4, output  # gunicorn's "App failed to load."
        assert len(ours) == 1 and "MFA_LOCK_AFTER" in ours[0], output
        assert output.count("Booting worker") == 1, output


# ------------------------------------------------------------------ the wheel

MAIL_SNIPPET = """
import json, sys
from standalone_mfa import create_app
from standalone_mfa.core.models import Notice, User
from standalone_mfa.notices import mailer, outbox

app = create_app()
with app.app_context():
    admin = User.get(User.username == "admin")
    admin.locale = "fr"
    admin.save()
    notice = outbox.queue(admin, "password_changed", to="admin@corp.example")
    message = mailer.message_for(notice)
    Notice.delete().execute()  # rendered, not sent
    outbox.queued_since_asked()
print(json.dumps({"subject": message.subject, "html": message.html, "body": message.body,
                  "module": __import__("standalone_mfa").__file__}))
"""


def copy_sources(source: Path) -> Path:
    """What the build reads, copied (without compiled files) so that no build writes
    into the checkout."""
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.mo", "templates")
            shutil.copytree(
                ROOT / name, source / name, ignore=ignore if name != "templates" else None
            )
        else:
            shutil.copy2(ROOT / name, source / name)
    return source


def build_wheel(tmp_path: Path) -> Path:
    source = copy_sources(tmp_path / "source")
    built = run(
        [PYTHON, "-m", "build", "--outdir", tmp_path / "dist", source], tmp_path, None, 600
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    [wheel] = (tmp_path / "dist").glob("*.whl")
    return wheel


@contextlib.contextmanager
def serving(gunicorn: Path, cwd: Path, env: dict, log: Path):
    with log.open("w") as handle:
        process = subprocess.Popen(  # noqa: S603 -- the fresh venv's gunicorn
            [gunicorn, "--bind=127.0.0.1:0", "--no-control-socket", "standalone_mfa:create_app()"],
            cwd=cwd,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            match = re.search(r"Listening at: (http://127\.0\.0\.1:\d+)", log.read_text())
            if match and "Booting worker" in log.read_text():
                with contextlib.suppress(requests.RequestException):
                    if requests.get(match.group(1) + "/healthz", timeout=5).ok:
                        break
            time.sleep(0.1)  # polling for readiness
        else:
            pytest.fail(f"gunicorn did not answer:\n{log.read_text()}")
        yield match.group(1)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.mark.slow
@pytest.mark.server
def test_the_wheel_holds_everything_and_serves_french_from_anywhere(tmp_path):
    wheel = build_wheel(tmp_path)

    # Its files: every template, every static file, each catalogue compiled and current.
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        templates = {
            f"standalone_mfa/templates/{p.relative_to(ROOT / 'templates').as_posix()}"
            for p in (ROOT / "templates").rglob("*")
            if p.is_file()
        }
        static = {
            f"standalone_mfa/{p.relative_to(ROOT / 'standalone_mfa').as_posix()}"
            for p in (ROOT / "standalone_mfa" / "static").rglob("*")
            if p.is_file()
        }
        migrations = {
            f"standalone_mfa/migrations/{p.name}"
            for p in (ROOT / "standalone_mfa" / "migrations").glob("*.py")
        }
        assert templates and templates <= names, sorted(templates - names)
        assert static and static <= names and migrations <= names
        for locale in LOCALES:
            mo = f"standalone_mfa/translations/{locale}/LC_MESSAGES/messages.mo"
            compiled = archive.read(mo) if mo in names else None
            assert catalogue_differences(source_po(locale), compiled, locale) == [], locale
        assert not [n for n in names if n.endswith((".po", ".pot"))]
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert "standalone-mfa = standalone_mfa.cli:main" in archive.read(entry_points).decode()

    # A fresh virtual environment, the wheel and gunicorn (dependencies from the cache).
    venv = tmp_path / "venv"
    made = run([PYTHON, "-m", "venv", venv], tmp_path, clean_env())
    assert made.returncode == 0, made.stderr
    installed = run(
        [venv / "bin" / "pip", "install", "-q", "--disable-pip-version-check", wheel, "gunicorn"],
        tmp_path,
        clean_env(),
        600,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]

    # From a folder outside the checkout, with the settings where the variable says.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    settings = tmp_path / "settings"
    env = clean_env(**{paths.INSTANCE_VARIABLE: str(settings)})
    command = venv / "bin" / "standalone-mfa"
    assert_one_line(run([command, "--help"], elsewhere, env), "SECRET_KEY")
    wrote = run([venv / "bin" / "python", "-m", "standalone_mfa.instance"], elsewhere, env)
    assert wrote.returncode == 0 and str(settings / "config.py") in wrote.stdout, wrote.stderr
    ready = run([command, "init-db"], elsewhere, env)
    assert ready.returncode == 0, ready.stderr
    assert f"Database ready: sqlite:///{settings}/standalone_mfa.sqlite3" in ready.stdout
    listed = run([command, "user", "show", "admin"], elsewhere, env)
    assert listed.returncode == 0 and "admin" in listed.stdout, listed.stderr

    with serving(venv / "bin" / "gunicorn", elsewhere, env, tmp_path / "gunicorn.log") as url:
        page = requests.get(url + "/login", headers={"Accept-Language": "fr"}, timeout=10)
        assert page.status_code == 200
        assert '<html lang="fr">' in page.text and "Se connecter" in page.text
        style = requests.get(url + "/static/style.css", timeout=10)
        assert (
            style.status_code == 200
            and style.content == (ROOT / "standalone_mfa" / "static" / "style.css").read_bytes()
        )
    assert "Translations:" not in (tmp_path / "gunicorn.log").read_text()

    mail_env = env | {
        "FLASK_MAIL_SERVER": "127.0.0.1",
        "FLASK_MAIL_DEFAULT_SENDER": "signin@corp.example",
    }
    rendered = run([venv / "bin" / "python", "-c", MAIL_SNIPPET], elsewhere, mail_env)
    assert rendered.returncode == 0, rendered.stderr
    mail = json.loads(rendered.stdout.strip().splitlines()[-1])
    assert mail["module"].startswith(str(venv)), mail["module"]
    french = read_po(io.BytesIO(source_po("fr")), locale="fr")
    assert mail["subject"] == french["Your password was changed"].string
    assert '<html lang="fr">' in mail["html"] and "{{" not in mail["body"]


@pytest.mark.slow
def test_an_editable_install_compiles_the_catalogues_in_place(tmp_path):
    """`pip install -e .` without make (a packaging tool, an IDE): the build compiles
    each catalogue beside its source, where the checkout's package reads it, and the
    checkout's templates are the ones served."""
    source = copy_sources(tmp_path / "source")
    assert not list(source.rglob("*.mo"))
    venv = tmp_path / "venv"
    assert run([PYTHON, "-m", "venv", venv], tmp_path, clean_env()).returncode == 0
    installed = run(
        [
            venv / "bin" / "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "--no-deps",
            "-e",
            source,
        ],
        tmp_path,
        clean_env(),
        600,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    for locale in LOCALES:
        mo = source / "standalone_mfa" / "translations" / locale / "LC_MESSAGES" / "messages.mo"
        compiled = mo.read_bytes() if mo.is_file() else None
        assert catalogue_differences(source_po(locale), compiled, locale) == [], locale
    assert not (source / "standalone_mfa" / "templates").exists()  # the checkout's are used
