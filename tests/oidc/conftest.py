"""The app with an issuer (OpenID Connect on), for every test of this folder."""

import pytest
from support.app import make_app
from support.oidc import ISSUER


@pytest.fixture
def app(tmp_path, clock):
    app = make_app(tmp_path, clock, OIDC_ISSUER=ISSUER)
    yield app
    from standalone_mfa.core.db import db

    with app.app_context():
        db.close()
