"""The sign-in: the state machine (`state`), the server-side sessions that carry it
(`sessions`), and the steps a browser goes through (`steps`, `reauth`)."""
