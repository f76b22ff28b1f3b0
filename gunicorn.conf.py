"""gunicorn reads this file from its working directory (`-c FILE` names another): it
makes gunicorn believe forwarded headers only when the app does, so one setting decides,
the app's `PROXY_FIX_*` (instance/config.py, then `FLASK_PROXY_FIX_*`). Left to its
defaults, gunicorn believes `X-Forwarded-Proto: https` from 127.0.0.1 on its own, and
`SCRIPT_NAME` headers, whatever the app was told. Settings given on gunicorn's command
line still win over this file.

It also sets up prometheus-client's multiprocess mode, so that `/metrics` adds up every
worker's numbers: PROMETHEUS_MULTIPROC_DIR must be set before prometheus_client is first
imported (the app's import below does it), so it is set here, at the top. Unset, it is a
new private temporary folder, removed when gunicorn exits; set (systemd's environment,
say), its old files are deleted at start, as prometheus-client requires.

Installed from the wheel, copy this file next to the settings (it is in the sdist) and
name it: `gunicorn -c /etc/standalone-mfa/gunicorn.conf.py 'standalone_mfa:create_app()'`
(docs/deploy.md). A configuration error here is one line and exit status 2, as in the
app."""

import glob
import os
import shutil
import sys
import tempfile

_OWN_METRICS_DIR = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _OWN_METRICS_DIR:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="smfa-metrics-")

from prometheus_client import multiprocess  # noqa: E402 -- after the variable is set

from standalone_mfa.core.config import ConfigurationError, proxy_hops  # noqa: E402

try:
    _hops = proxy_hops()
except ConfigurationError as exc:
    # gunicorn prints a traceback for any other error in its config file.
    print("Configuration error: " + " ".join(str(exc).split()), file=sys.stderr)
    sys.exit(2)

# A proxy on this machine is believed only when the app believes one; even then the
# app's ProxyFix (with its hop counts) is what reads X-Forwarded-For, -Host, -Prefix.
forwarded_allow_ips = (
    "127.0.0.1,::1" if _hops["PROXY_FIX_X_FOR"] or _hops["PROXY_FIX_X_PROTO"] else ""
)
# Over a unix socket every peer counts as allowed: the scheme header must be off here too.
secure_scheme_headers = {"X-FORWARDED-PROTO": "https"} if _hops["PROXY_FIX_X_PROTO"] else {}
# SCRIPT_NAME and PATH_INFO from request headers: never (the prefix is X-Forwarded-Prefix,
# believed by ProxyFix when PROXY_FIX_X_PREFIX says so).
forwarder_headers = ""


def on_starting(server):
    """Numbers left by an earlier run would be added to this one's: start from none."""
    for path in glob.glob(os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], "*.db")):
        os.unlink(path)


def child_exit(server, worker):
    """A worker that ended: its gauges (the pool) stop counting; its counters stay."""
    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _OWN_METRICS_DIR:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
