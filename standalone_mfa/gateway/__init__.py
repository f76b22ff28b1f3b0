"""The gateway: a reverse proxy asks whether a request for another app may pass
(the rules in ACCESS_CONTROL, the session behind the cookie, the answer headers)."""
