"""The web layer: blueprints, forms, cookies, error pages and the request guard. The
only code that touches `request`, `url_for` or `flash`."""
