"""Debian's Apache httpd with mod_auth_openidc as an OpenID relying party of the portal
(`apache_openidc`): a directory /protected/ any signed-in person may open, and
/protected/admins/ only the members of a group (`Require claim groups:NAME`). Each
page's answer carries in headers what Apache saw: REMOTE_USER and the claims
mod_auth_openidc passes on (`seen_by_apache`).

Apache runs as `apache2 -f CONF -DFOREGROUND` (a child of the test, stopped by its
pid; `-k start` would detach it), on a port of 127.0.0.1 the kernel gave, with its own
ServerRoot, pid file and logs under the test's folder. Started as root it serves as
www-data, so its pages sit in a folder of their own that www-data may read."""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import requests

from support.oath import tool
from support.servers import free_port, stop

MODULES = Path("/usr/lib/apache2/modules")
LOADED = (
    ("mpm_event_module", "mod_mpm_event.so"),
    ("authn_core_module", "mod_authn_core.so"),
    ("authz_core_module", "mod_authz_core.so"),
    ("authz_user_module", "mod_authz_user.so"),
    ("headers_module", "mod_headers.so"),
    ("mime_module", "mod_mime.so"),
    ("dir_module", "mod_dir.so"),
    ("auth_openidc_module", "mod_auth_openidc.so"),
)
# The claims mod_auth_openidc passes to the app (OIDC_CLAIM_<name>), echoed back.
CLAIMS = ("sub", "preferred_username", "email", "groups", "amr", "acr")
PAGE = "hello from protected\n"
APACHE_BOOT_TIMEOUT = 30


def apache_ports() -> tuple[int, str, str, str]:
    """A port for Apache, and the URIs to register for it before it starts: (port,
    base URL, redirect URI, post-logout URI)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    return port, url, f"{url}/protected/redirect_uri", f"{url}/logged-out.html"


def _user_lines() -> str:
    """As root, Apache's children must run as someone else (www-data)."""
    if os.geteuid() != 0:
        return ""
    for user in ("www-data", "nobody"):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(user)
            return f"User {user}\nGroup {grp.getgrgid(entry.pw_gid).gr_name}\n"
    return ""


def config_text(
    folder: Path,
    port: int,
    pages: Path,
    issuer: str,
    client_id: str,
    secret: str,
    redirect_uri: str,
    group: str,
) -> str:
    modules = "".join(f"LoadModule {name} {MODULES / file}\n" for name, file in LOADED)
    echoed = "".join(
        f'  Header always set X-Claim-{name} "expr=%{{reqenv:OIDC_CLAIM_{name}}}"\n'
        for name in CLAIMS
    )
    return f"""{modules}ServerRoot {folder}
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
PidFile {folder}/apache.pid
ErrorLog {folder}/error.log
LogLevel warn auth_openidc:info
{_user_lines()}DocumentRoot {pages}
TypesConfig /etc/mime.types
DirectoryIndex index.html
<Directory />
  Require all denied
</Directory>
<Directory {pages}>
  Require all granted
</Directory>

OIDCProviderMetadataURL {issuer}/.well-known/openid-configuration
OIDCClientID {client_id}
OIDCClientSecret {secret}
OIDCRedirectURI {redirect_uri}
OIDCCryptoPassphrase interop-tests-passphrase-not-a-secret
OIDCScope "openid profile email groups"
OIDCRemoteUserClaim preferred_username
OIDCPKCEMethod S256
OIDCSessionType server-cache
OIDCCacheType shm

<Location /protected>
  AuthType openid-connect
  Require valid-user
  Header always set X-Seen-User "expr=%{{REMOTE_USER}}"
{echoed}</Location>
<Location /protected/admins>
  AuthType openid-connect
  Require claim groups:{group}
</Location>
"""


@contextlib.contextmanager
def apache_openidc(
    folder: Path,
    port: int,
    issuer: str,
    client_id: str,
    secret: str,
    redirect_uri: str,
    group: str = "admins",
):
    """Apache with mod_auth_openidc, the portal at `issuer` its provider, registered
    there as `client_id`/`secret` with `redirect_uri`; yields the base URL. Stopped by
    its pid however the test ends."""
    binary = tool("apache2")
    assert (MODULES / "mod_auth_openidc.so").exists(), (
        "mod_auth_openidc is not installed; `make test` installs it with apt"
    )
    folder.mkdir(parents=True, exist_ok=True)
    # Under /tmp, not TMPDIR: www-data must reach the pages, and TMPDIR may lie in a
    # folder only its owner may enter (`mktemp -d`, 0700).
    pages = Path(tempfile.mkdtemp(prefix="smfa-apache-pages-", dir="/tmp"))
    try:
        pages.chmod(0o755)
        for path in (pages / "protected" / "index.html", pages / "protected/admins/index.html"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(PAGE)
        (pages / "logged-out.html").write_text("signed out\n")
        for path in pages.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        conf = folder / "apache.conf"
        conf.write_text(
            config_text(folder, port, pages, issuer, client_id, secret, redirect_uri, group)
        )
        with (folder / "apache.out").open("w") as out:
            process = subprocess.Popen(  # noqa: S603 -- Debian's apache2
                [binary, "-f", str(conf), "-DFOREGROUND"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C"},
            )
        try:
            _wait(process, port, folder)
            yield f"http://127.0.0.1:{port}"
        finally:
            stop(process)
    finally:
        shutil.rmtree(pages, ignore_errors=True)


def _wait(process: subprocess.Popen, port: int, folder: Path) -> None:
    deadline = time.monotonic() + APACHE_BOOT_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            logs = [folder / "apache.out", folder / "error.log"]
            text = "".join(p.read_text(errors="replace") for p in logs if p.exists())
            raise AssertionError(f"apache2 exited with {process.returncode}:\n{text}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"http://127.0.0.1:{port}/logged-out.html", timeout=2).ok:
                return
        time.sleep(0.1)  # polling for readiness, not waiting for an outcome
    raise AssertionError("apache2 did not answer within 30 s")


def seen_by_apache(response: requests.Response) -> dict[str, str]:
    """What the protected page's request carried once mod_auth_openidc let it through:
    REMOTE_USER and the claims it passed on (the empty ones left out)."""
    seen = {"REMOTE_USER": response.headers.get("X-Seen-User", "")}
    for name in CLAIMS:
        seen[f"OIDC_CLAIM_{name}"] = response.headers.get(f"X-Claim-{name}", "")
    return {k: v for k, v in seen.items() if v and v != "(null)"}
