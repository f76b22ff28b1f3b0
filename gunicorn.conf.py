"""gunicorn reads this file from its working directory (`-c FILE` names another): it
makes gunicorn believe forwarded headers only when the app does, so one setting decides,
the app's `PROXY_FIX_*` (instance/config.py, then `FLASK_PROXY_FIX_*`). Left to its
defaults, gunicorn believes `X-Forwarded-Proto: https` from 127.0.0.1 on its own, and
`SCRIPT_NAME` headers, whatever the app was told. Settings given on gunicorn's command
line still win over this file."""

from standalone_mfa.core.config import proxy_hops

_hops = proxy_hops()

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
