"""The benchmark behind `make bench`: gunicorn serving the real app on a fresh, seeded
database, driven by an asyncio load generator through complete sign-ins.

`run` orchestrates and reports, `seed` fills the database, `load` is the load
generator, `wsgi` is the app gunicorn serves (the product plus one trivial route)."""
