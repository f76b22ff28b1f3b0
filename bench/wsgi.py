"""The app the benchmark serves: the product, built as `wsgi.py` builds it, plus one
trivial route (`/bench/ping`) as the baseline. Bench-only: the product has no such route.

The baseline runs through everything every product page runs through (the session
interface, the state guard, the security headers) but does no work of its own, so
"code step ÷ baseline" says what the second factor itself costs."""

from __future__ import annotations

import os

from standalone_mfa import create_app
from standalone_mfa.signin import state
from standalone_mfa.web import guard

PING_ENDPOINT = "bench_ping"

app = create_app(instance_path=os.environ.get("BENCH_INSTANCE_PATH"))


@app.route("/bench/ping", endpoint=PING_ENDPOINT)
def ping():
    """Answer "ok" whatever the sign-in state."""
    return "ok"


# The guard answers an endpoint it does not know only when signed in; this one answers
# in every state, as static files do, so an anonymous client gets the page, not a 302.
guard.ENDPOINT_STATES[PING_ENDPOINT] = set(state.STATES)


def _profiled(wsgi_app, directory: str, prefix: str):
    """Each worker profiles (cProfile) the requests whose path starts with `prefix`,
    and writes its stats to `directory`/PID.prof every 200 of them: `make bench
    BENCH_ARGS="--profile DIR --profile-path /mfa/verify"`. Measurement only."""
    import cProfile

    profiler = cProfile.Profile()
    seen = [0]

    def profiled(environ, start_response):
        if not environ.get("PATH_INFO", "").startswith(prefix):
            return wsgi_app(environ, start_response)
        profiler.enable()
        try:
            return list(wsgi_app(environ, start_response))
        finally:
            profiler.disable()
            seen[0] += 1
            if seen[0] % 200 == 0:
                profiler.dump_stats(os.path.join(directory, f"{os.getpid()}.prof"))

    return profiled


if os.environ.get("BENCH_PROFILE"):
    app.wsgi_app = _profiled(
        app.wsgi_app, os.environ["BENCH_PROFILE"], os.environ.get("BENCH_PROFILE_PATH", "/")
    )
