"""Notices: mails that tell people what happened to their account.

A notice is queued in the same transaction as its event (`outbox.queue`), so it exists
exactly when the event does, and is sent afterwards by `sender`: a thread of the
process, woken after the response (or at the end of a CLI command), and `flask mail
send` from cron for whatever is still pending. Rendering (`mailer`) happens at sending
time, from Jinja templates under `templates/mail/`. A layer of its own between core
and the rest: factors, signin, accounts and web queue notices; it imports only core.
"""
